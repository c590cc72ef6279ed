"""``echoposed phantom --seed S --out FILE [--style FILE] [--heart-rate BPM]``: write one patient.

The file type follows the suffix (``.npz`` keeps every field and the metadata; ``.nii`` /
``.nii.gz`` get a geometry sidecar ``<file>.yaml``), via ``echoposed_sim.volume_io.save_volume``.
"""
from __future__ import annotations

import argparse
import sys
import time

__all__ = ['add_arguments', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--seed', type=int, required=True, help='patient seed (non-negative integer)')
    parser.add_argument('--out', required=True, help='output file (.npz, .nii or .nii.gz)')
    parser.add_argument('--style', default=None,
                        help='acquisition style YAML (default: sim/styles/default.yaml)')
    parser.add_argument('--frames', type=int, default=20, help='frames per cardiac cycle (default 20)')
    parser.add_argument('--heart-rate', type=float, default=None, metavar='BPM',
                        help='heart rate in beats/min (default: drawn from the seed, 55-95)')
    parser.add_argument('--compress', action='store_true', help='zlib-compress a .npz')


def run(args: argparse.Namespace) -> int:
    from echoposed_sim.phantom import PhantomError, load_style, make_phantom
    from echoposed_sim.volume import VolumeError
    from echoposed_sim.volume_io import save_volume

    try:
        style = load_style(args.style)
        start = time.perf_counter()
        heart = None if args.heart_rate is None else {'heart_rate_bpm': args.heart_rate}
        volume = make_phantom(args.seed, style, frames=args.frames, heart=heart)
        elapsed = time.perf_counter() - start
        path = save_volume(volume, args.out, compress=args.compress)
    except (PhantomError, VolumeError) as err:
        print(f'echoposed phantom: {err}', file=sys.stderr)
        return 2
    t, z, y, x = volume.data.shape
    print(f'{path}: phantom seed {args.seed}, style {style.name}, {t} frames of {x}x{y}x{z} voxels at '
          f'{volume.spacing[0]:g} mm, cycle {volume.cycle_s:.3f} s, radius {volume.radius:.1f} mm, '
          f'views {", ".join(sorted(volume.views))}; generated in {elapsed:.1f} s')
    return 0
