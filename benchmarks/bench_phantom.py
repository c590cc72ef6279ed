"""Phantom generation speed: CPU seconds per patient, and the fused numba kernels vs plain baselines.

Measured in one process, single-threaded (the phantom never uses more than one core):

- patient: ``make_phantom(seed, style, frames)`` CPU time (``time.process_time``) and wall time,
  median over ``--seeds`` patients (numba kernels compiled and cached before timing);
- per-frame rendering: the numba kernel ``render_frame`` (backward motion map, trilinear lookup,
  leaflets, attenuation, noise, log compression in one pass) vs a baseline doing the same work
  with array steps: the motion map (``backward_points``), ``scipy.ndimage.map_coordinates``
  (order 1) on the reference echo, then numpy attenuation, noise and log compression (no
  leaflets, so the baseline does less);
- labels: the one-pass numba label kernel vs the numpy oracle ``Anatomy.labels_reference``.

    python benchmarks/bench_phantom.py --json out.json      # or: echoposed bench phantom

Target: a default-style patient with 20 frames in at most ``TARGET_PATIENT_CPU_S`` CPU seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

TARGET_PATIENT_CPU_S = 8.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--seeds', type=int, default=3, help='patients to time (default 3)')
    parser.add_argument('--frames', type=int, default=20, help='frames per cycle (default 20)')
    parser.add_argument('--style', default=None, help='acquisition style YAML (default: the default style)')


def _cpu(fn, *args, **kwargs):
    t0, w0 = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.process_time() - t0, time.perf_counter() - w0


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    from scipy import ndimage

    import echoposed_sim.phantom.generate as gen
    from echoposed_sim.phantom import backward_points, load_style, make_phantom

    style = load_style(args.style)
    make_phantom(0, style, frames=2, extent_mm=(64.0, 64.0, 64.0))   # compile / load kernels

    cpu, wall = [], []
    for seed in range(1, args.seeds + 1):
        _, c, w = _cpu(make_phantom, seed, style, args.frames)
        cpu.append(c)
        wall.append(w)

    # one frame of one patient, kernel vs array-step baseline (capture the kernel's inputs)
    captured = {}
    kernel = gen.render_frame

    def grab(*a):
        captured['args'] = a
        return kernel(*a)

    gen.render_frame = grab
    try:
        parts = gen.build_patient(1, style, frames=2)
    finally:
        gen.render_frame = kernel
    a = list(captured['args'])
    out, env, spacing, centre, q, mp, probe, att_lut, noise, disp = (a[0], a[2], a[6], a[7], a[8], a[9],
                                                                     a[11], a[12], a[13], a[15])
    _, kernel_s, _ = _cpu(kernel, *a)
    _, kernel_s2, _ = _cpu(kernel, *a)
    kernel_s = min(kernel_s, kernel_s2)

    def baseline():
        nz, ny, nx = out.shape
        k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing='ij')
        p_v = np.stack([i.ravel() * spacing[0], j.ravel() * spacing[1], k.ravel() * spacing[2]], axis=1)
        p_h = (p_v - centre) @ q
        mat = backward_points(p_h, mp) @ q.T + centre
        idx = (mat / spacing)[:, ::-1].T
        amp = ndimage.map_coordinates(env, idx, order=1, prefilter=False)
        depth = np.linalg.norm(p_v - probe, axis=1)
        amp = amp * att_lut[np.minimum((2 * depth).astype(int), len(att_lut) - 1)]
        n = np.resize(noise, (amp.size, 2)) * disp[2]     # the kernel wraps round the same table
        val = 1.0 + (10.0 * np.log10((amp + n[:, 0]) ** 2 + n[:, 1] ** 2 + 1e-18) + disp[0]) / disp[1]
        return (np.clip(val, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(out.shape)

    _, base_s, _ = _cpu(baseline)

    an = parts.anatomy
    rng = np.random.default_rng(0)
    pts = np.ascontiguousarray(rng.uniform(0, 140, size=(3, 1_000_000)), np.float32)
    _, lab_fast, _ = _cpu(an.labels, pts)
    _, lab_slow, _ = _cpu(an.labels_reference, pts)

    patient_cpu = statistics.median(cpu)
    return {
        'style': style.name, 'frames': args.frames, 'voxels_per_frame': int(np.prod(out.shape)),
        'patient_cpu_s': patient_cpu, 'patient_cpu_s_all': cpu, 'patient_wall_s': statistics.median(wall),
        'frame_kernel_cpu_s': kernel_s, 'frame_baseline_cpu_s': base_s, 'frame_ratio': base_s / kernel_s,
        'labels_numba_cpu_s_per_M': lab_fast, 'labels_numpy_cpu_s_per_M': lab_slow,
        'labels_ratio': lab_slow / lab_fast,
        'target_patient_cpu_s': TARGET_PATIENT_CPU_S, 'targets_met': patient_cpu <= TARGET_PATIENT_CPU_S,
        'machine': {'cpu_count': os.cpu_count(), 'load_avg_1min': os.getloadavg()[0],
                    'python': platform.python_version()},
    }


def summary(result: dict) -> str:
    return (f'phantom ({result["style"]}, {result["frames"]} frames): {result["patient_cpu_s"]:.2f} CPU s per '
            f'patient (target <= {result["target_patient_cpu_s"]:g}); '
            f'frame kernel {result["frame_kernel_cpu_s"]:.3f} s '
            f'vs array baseline {result["frame_baseline_cpu_s"]:.3f} s (x{result["frame_ratio"]:.1f}); labels '
            f'x{result["labels_ratio"]:.1f} vs numpy')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument('--json', default=None, help='write the figures as JSON here')
    args = parser.parse_args(argv)
    result = run(args)
    print(summary(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
