"""Slicer speed: batched 128 x 128 slices per second, numba kernel vs scipy.ndimage.map_coordinates.

Both run in the same process on the same points: a phantom-sized volume (default 160^3 voxels of
1 mm, 20 frames, uint8 — what a phantom patient looks like in memory), N training-like poses
(orbit within 20 degrees of the base, probe any turn about z with +-20 degree tilts, random
cardiac phase), the default 75 degree / 150 mm sector. The baseline is
``map_coordinates(order=1)`` over (frame, k, j, i) on the in-fan points of the same slices (the
volume padded with frame 0 after the last so time wraps like the slicer's; the pad is not timed):
the same 16-tap interpolation, single-threaded as scipy is. The numba figure uses every numba
thread (``NUMBA_NUM_THREADS``, default all cores); a one-thread figure is reported too.

    python benchmarks/bench_slicer.py --json out.json       # or: echoposed bench slicer --json out.json

Heavy imports happen inside :func:`run`, so building the command line stays cheap.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

TARGET_SLICES_PER_S = 1000.0
TARGET_RATIO = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--size', type=int, default=160, help='voxels per side of the cubic volume (default 160)')
    parser.add_argument('--frames', type=int, default=20, help='cardiac frames in the volume (default 20)')
    parser.add_argument('--dtype', choices=('uint8', 'float32'), default='uint8', help='volume data type')
    parser.add_argument('--batch', type=int, default=256, help='slices per batched call (default 256)')
    parser.add_argument('--repeats', type=int, default=7,
                        help='interleaved timed rounds (numba, numba on 1 thread, scipy); medians count')
    parser.add_argument('--scipy-slices', type=int, default=48,
                        help='slices of the same batch given to the scipy baseline (default 48)')
    parser.add_argument('--seed', type=int, default=0)


def machine_info() -> dict:
    import numba
    import numpy
    import scipy
    cpu = platform.processor() or ''
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), cpu)
    except OSError:
        pass
    return {
        'cpu': cpu,
        'cpus': os.cpu_count(),
        'load_avg_1min': os.getloadavg()[0] if hasattr(os, 'getloadavg') else None,
        'platform': platform.platform(),
        'python': platform.python_version(),
        'numpy': numpy.__version__,
        'scipy': scipy.__version__,
        'numba': numba.__version__,
        'numba_threads': numba.get_num_threads(),
        'numba_threading_layer': _threading_layer(),
    }


def _threading_layer() -> str | None:
    import numba
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return None


def _poses(n: int, seed: int):
    import numpy as np
    from scipy.spatial.transform import Rotation
    rng = np.random.default_rng(seed)
    phi = rng.uniform(0, 2 * np.pi, n)
    axis = np.stack([np.cos(phi), np.sin(phi), np.zeros(n)], axis=1)
    orbits = Rotation.from_rotvec(axis * rng.uniform(0, np.deg2rad(20), n)[:, None]).as_matrix()
    turn = Rotation.from_rotvec(np.outer(rng.uniform(-np.pi, np.pi, n), [0.0, 0.0, 1.0]))
    tilt = Rotation.from_euler('xy', rng.uniform(-np.deg2rad(20), np.deg2rad(20), (n, 2)))
    return orbits, (turn * tilt).as_matrix(), rng.uniform(0, 1, n)


def run(args: argparse.Namespace) -> dict:
    import numba
    import numpy as np
    from scipy.ndimage import map_coordinates

    from echoposed_sim.sector import SectorGeometry
    from echoposed_sim.slicer import poses_to_voxel_frames, prepare_volume, slice_batch, warm_up
    from echoposed_sim.volume import Volume

    rng = np.random.default_rng(args.seed)
    shape = (args.frames, args.size, args.size, args.size)
    data = rng.integers(0, 256, shape, dtype=np.uint8)
    if args.dtype == 'float32':
        data = (data / np.float32(255)).astype(np.float32)
    centre = np.full(3, (args.size - 1) / 2.0)
    volume = Volume(data=data, spacing=np.ones(3), centre=centre, radius=0.47 * args.size,
                    name=f'bench {args.size}^3 x {args.frames}')
    sector = SectorGeometry()  # 75 degrees, 150 mm, 128 x 128
    orbits, probes, ts = _poses(args.batch, args.seed + 1)

    t0 = time.perf_counter()
    warm_up()
    warm_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    prepared = prepare_volume(volume)
    prepare_s = time.perf_counter() - t0
    out = np.empty((args.batch,) + sector.shape, dtype=np.float32)
    fast = slice_batch(prepared, orbits, probes, ts, sector)
    plain_equal = bool(np.array_equal(fast, slice_batch(volume, orbits, probes, ts, sector)))

    # scipy baseline: the same in-fan points of the first n slices, 4-linear over (frame, k, j, i).
    n = min(args.scipy_slices, args.batch)
    o, ex, ez = poses_to_voxel_frames(volume, orbits[:n], probes[:n])
    idx = sector.inside_index
    pts = sector.points.reshape(-1, 3)[idx]
    ijk = o[:, None, :] + pts[None, :, 0:1] * ex[:, None, :] + pts[None, :, 2:3] * ez[:, None, :]
    frame = np.broadcast_to((np.mod(ts[:n], 1.0) * args.frames)[:, None], ijk.shape[:2])
    coords = np.stack([frame, ijk[..., 2], ijk[..., 1], ijk[..., 0]]).reshape(4, -1)
    padded = np.concatenate([data, data[:1]])  # frame T == frame 0: time wraps as in the slicer
    scale = np.float32(1 / 255) if data.dtype == np.uint8 else np.float32(1)

    def scipy_slices() -> np.ndarray:
        return map_coordinates(padded, coords, order=1, mode='constant', cval=0.0, output=np.float32)

    # Interleaved repeats (bricked on all threads and on one, plain layout, scipy) so that the load
    # of a shared machine falls on all alike; each figure is the median over the repeats.
    threads = numba.get_num_threads()
    times: dict[str, list[float]] = {'bricked': [], 'bricked_1': [], 'plain': [], 'scipy': []}
    cpu_times: dict[str, list[float]] = {key: [] for key in times}

    def timed(key: str, fn) -> None:
        t, c = time.perf_counter(), time.process_time()
        fn()
        times[key].append(time.perf_counter() - t)
        cpu_times[key].append(time.process_time() - c)

    for _ in range(args.repeats):
        timed('bricked', lambda: slice_batch(prepared, orbits, probes, ts, sector, out=out))
        numba.set_num_threads(1)
        try:
            timed('bricked_1', lambda: slice_batch(prepared, orbits, probes, ts, sector, out=out))
        finally:
            numba.set_num_threads(threads)
        timed('plain', lambda: slice_batch(volume, orbits, probes, ts, sector, out=out))
        timed('scipy', scipy_slices)
    rate = {key: (n if key == 'scipy' else args.batch) / float(np.median(v)) for key, v in times.items()}
    # Per CPU-second of this process: on a loaded machine wall-clock rates say more about the other
    # processes than about the code; single-threaded CPU-time rates compare the implementations.
    cpu_rate = {key: (n if key == 'scipy' else args.batch) / max(float(np.median(v)), 1e-9)
                for key, v in cpu_times.items()}
    slices_per_s, slices_per_s_1 = rate['bricked'], rate['bricked_1']
    scipy_slices_per_s = rate['scipy']
    values = scipy_slices()

    images = np.zeros((n, sector.height * sector.width), dtype=np.float32)
    images[:, idx] = values.reshape(n, -1) * scale
    images = images.reshape((n,) + sector.shape)
    # Agreement away from the volume's faces (scipy's mode='constant' treats the last half voxel its own way).
    size = np.array(shape[:0:-1]) - 1
    interior = np.all((ijk > 1) & (ijk < size - 1), axis=-1)
    interior_img = np.zeros((n, sector.height * sector.width), dtype=bool)
    interior_img[:, idx] = interior
    interior_img = interior_img.reshape(images.shape)
    diff = np.abs(fast[:n] - images)[interior_img]
    max_diff = float(diff.max()) if diff.size else float('nan')

    ratio = slices_per_s / scipy_slices_per_s
    return {
        'target': 'slicer',
        'slices_per_s': round(slices_per_s, 1),
        'scipy_slices_per_s': round(scipy_slices_per_s, 1),
        'ratio': round(ratio, 3),
        'slices_per_s_1thread': round(slices_per_s_1, 1),
        'ratio_1thread': round(slices_per_s_1 / scipy_slices_per_s, 2),
        'slices_per_cpu_s_1thread': round(cpu_rate['bricked_1'], 1),
        'scipy_slices_per_cpu_s': round(cpu_rate['scipy'], 1),
        'ratio_cpu_1thread': round(cpu_rate['bricked_1'] / cpu_rate['scipy'], 2),
        'plain_layout_slices_per_s': round(rate['plain'], 1),
        'prepare_volume_s': round(prepare_s, 3),
        'plain_layout_equal': plain_equal,
        'targets': {'slices_per_s': TARGET_SLICES_PER_S, 'ratio': TARGET_RATIO},
        'targets_met': bool(slices_per_s >= TARGET_SLICES_PER_S and ratio >= TARGET_RATIO),
        'max_abs_diff_vs_scipy': max_diff,
        'fraction_in_volume': round(float(interior.mean()), 3),
        'warm_up_s': round(warm_s, 2),
        'config': {
            'volume_shape_tzyx': list(shape), 'dtype': args.dtype, 'spacing_mm': 1.0,
            'image': list(sector.shape), 'sector_angle_deg': round(float(np.rad2deg(sector.angle_rad)), 2),
            'depth_mm': sector.depth_mm, 'in_fan_pixels': int(idx.size), 'batch': args.batch,
            'repeats': args.repeats, 'scipy_slices': n, 'seed': args.seed,
        },
        'machine': machine_info(),
    }


def summary(result: dict) -> str:
    r = result
    met = 'met' if r['targets_met'] else 'NOT met'
    return (f"slicer: {r['slices_per_s']:.0f} slices/s batched ({r['machine']['numba_threads']} threads; "
            f"{r['slices_per_s_1thread']:.0f} on 1; plain layout {r['plain_layout_slices_per_s']:.0f}; "
            f"prepare_volume {r['prepare_volume_s'] * 1e3:.0f} ms), scipy map_coordinates "
            f"{r['scipy_slices_per_s']:.0f} slices/s, ratio {r['ratio']:.1f}x (per CPU-second, one thread each: "
            f"{r['ratio_cpu_1thread']:.1f}x); targets "
            f"(>= {TARGET_SLICES_PER_S:.0f}/s, >= {TARGET_RATIO:.0f}x) {met}; "
            f"load average {r['machine']['load_avg_1min']:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_arguments(parser)
    parser.add_argument('--json', metavar='PATH', help='write the figures as JSON here')
    args = parser.parse_args(argv)
    result = run(args)
    print(summary(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
            f.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
