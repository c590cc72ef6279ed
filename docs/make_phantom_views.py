"""Draw docs/img/phantom_views.png: a phantom's A4C / A2C / A3C at end-diastole and end-systole.

Run: .venv/bin/python docs/make_phantom_views.py [--seed S] [--style FILE] [--out PNG]
Slices with the project's slicer (echoposed_sim.slicer) at the standard-view poses stored in
the phantom (Volume.views), 75 degree sector, 170 mm depth, square pixels.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np

from echoposed_sim.phantom import load_style, make_phantom
from echoposed_sim.sector import SectorGeometry
from echoposed_sim.slicer import slice_volume

VIEWS = ('A4C', 'A2C', 'A3C')
# anatomy key points (meta['key_points_mm'], end-diastole) -> chamber labels on the images
LABELS = {'rv': 'RV', 'la': 'LA', 'ra': 'RA', 'aortic': 'Ao'}


def _annotate(ax, vol, view, sector) -> None:
    """Write chamber names where the anatomy's landmarks fall in the image plane."""
    R = view.orbit @ view.probe
    o = vol.centre - vol.radius * view.orbit[:, 2]
    row_mm, col_mm = sector.pixel_mm
    points = dict(vol.meta['key_points_mm'])
    apex, mitral = np.array(points['apex']), np.array(points['mitral'])
    points['lv'] = (0.45 * apex + 0.55 * mitral).tolist()
    points['rv'] = (np.asarray(points['rv']) + 0.35 * (apex - mitral)).tolist()
    names = dict(LABELS, lv='LV')
    for key, text in names.items():
        q = R.T @ (np.asarray(points[key]) - o)
        if key == 'aortic':
            q = R.T @ (np.asarray(points[key]) + 14.0 * R[:, 2] - o)
        if abs(q[1]) > 12.0:      # out of this plane
            continue
        ax.text(q[0] / col_mm + (sector.width - 1) / 2, q[2] / row_mm, text, color='#ffd54a',
                fontsize=9, ha='center', va='center', alpha=0.9)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seed', type=int, default=4)
    ap.add_argument('--style', default=None, help='acquisition style YAML (default: sim/styles/default.yaml)')
    ap.add_argument('--out', default=str(Path(__file__).parent / 'img' / 'phantom_views.png'))
    ap.add_argument('--no-labels', action='store_true', help='leave the chamber names off')
    args = ap.parse_args(argv)
    vol = make_phantom(args.seed, load_style(args.style) if args.style else None)
    sector = SectorGeometry(angle_rad=float(np.deg2rad(75)), depth_mm=170.0, height=320, width=320,
                            square_pixels=True)
    t_es = vol.meta['end_systole_phase']
    phases = (('end-diastole', 0.0), ('end-systole', t_es))
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.6), facecolor='black')
    for r, (label, t) in enumerate(phases):
        for c, name in enumerate(VIEWS):
            view = vol.views[name]
            img = slice_volume(vol, view.orbit, view.probe, t, sector)
            ax = axes[r, c]
            rows = int(sector.depth_mm / sector.pixel_mm[0]) + 2
            ax.imshow(img[:rows], cmap='gray', vmin=0, vmax=1, interpolation='bilinear')
            if not args.no_labels:
                _annotate(ax, vol, view, sector)
            ax.set_title(f'{name}, {label} (t = {t:.2f} cycle)', color='white', fontsize=10)
            ax.axis('off')
    heart = vol.meta['heart']
    fig.suptitle(f'echoposed phantom, seed {args.seed}, style "{vol.meta["style"]["name"]}": '
                 f'HR {heart["heart_rate_bpm"]:.0f} bpm, EF {100 * heart["ejection_fraction"]:.0f} %, '
                 f'long-axis tilt {heart["tilt_deg"]:.0f} deg.  ASE display: A4C RV on the left, '
                 f'A3C aorta on the right', color='white', fontsize=10)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80, facecolor='black')
    print(args.out)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
