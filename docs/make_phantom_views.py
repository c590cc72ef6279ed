"""Draw docs/img/phantom_views.png: a phantom's A4C / A2C / A3C at end-diastole and end-systole.

Run: .venv/bin/python docs/make_phantom_views.py [--seed S] [--style FILE] [--out PNG]
Slices with the project's slicer (echoposed_sim.slicer) at the standard-view poses stored in
the phantom (Volume.views), 75 degree sector, 160 mm depth, square pixels.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from echoposed_sim.phantom import load_style, make_phantom  # noqa: E402
from echoposed_sim.sector import SectorGeometry  # noqa: E402
from echoposed_sim.slicer import slice_volume  # noqa: E402

VIEWS = ('A4C', 'A2C', 'A3C')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--style', default=None, help='acquisition style YAML (default: sim/styles/default.yaml)')
    ap.add_argument('--out', default=str(Path(__file__).parent / 'img' / 'phantom_views.png'))
    ap.add_argument('--base', action='store_true', help='also draw the base pose (identity) row')
    args = ap.parse_args(argv)
    vol = make_phantom(args.seed, load_style(args.style) if args.style else None)
    sector = SectorGeometry(angle_rad=float(np.deg2rad(75)), depth_mm=160.0, height=256, width=256,
                            square_pixels=True)
    t_es = vol.meta['end_systole_phase']
    phases = (('end-diastole', 0.0), ('end-systole', t_es))
    rows = len(phases) + (1 if args.base else 0)
    fig, axes = plt.subplots(rows, 3, figsize=(10.5, 3.6 * rows), facecolor='black')
    for r, (label, t) in enumerate(phases):
        for c, name in enumerate(VIEWS):
            view = vol.views[name]
            img = slice_volume(vol, view.orbit, view.probe, t, sector)
            ax = axes[r, c]
            ax.imshow(img, cmap='gray', vmin=0, vmax=1, interpolation='bilinear')
            ax.set_title(f'{name}, {label} (t={t:.2f})', color='white', fontsize=10)
            ax.axis('off')
    if args.base:
        for c, (t, turn) in enumerate(((0.0, 0.0), (0.0, 90.0), (t_es, 0.0))):
            rz = np.array([[np.cos(np.deg2rad(turn)), -np.sin(np.deg2rad(turn)), 0],
                           [np.sin(np.deg2rad(turn)), np.cos(np.deg2rad(turn)), 0], [0, 0, 1]])
            img = slice_volume(vol, np.eye(3), rz, t, sector)
            axes[-1, c].imshow(img, cmap='gray', vmin=0, vmax=1)
            axes[-1, c].set_title(f'base pose, probe turned {turn:.0f} deg, t={t:.2f}', color='white', fontsize=10)
            axes[-1, c].axis('off')
    fig.suptitle(f'echoposed phantom seed {args.seed} ({vol.meta["style"]["name"]} style): '
                 f'RV / RA on the image left in A4C, aorta on the right in A3C', color='white', fontsize=11)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90, facecolor='black')
    print(args.out)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
