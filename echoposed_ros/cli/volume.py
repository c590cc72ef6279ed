"""``echoposed volume info FILE`` and ``echoposed volume preview FILE --out PNG``: check a volume file.

Both load the file as training and the simulator do (``echoposed_sim.volume_io.load_volume``:
the file's orientation, its sidecar ``FILE.yaml``, the options below) and report what was read
and what was assumed. ``info`` prints shape, spacing, frames, centre, orbit radius, apex and
beam, the base pose (quaternions x, y, z, w) and the loader's notes (``--json OUT`` writes them
too). ``preview`` draws the base-pose slice with its fan and the three orthogonal planes through
the centre with the sector, beam, apex and orbit sphere over them (a 1500 x 1000 PNG). A file
that cannot be used is one line on stderr and exit status 2. See docs/volumes.md.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from .errors import UsageError

__all__ = ['add_arguments', 'run']


def _loader_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('file', metavar='FILE', help='volume file (.nii .nii.gz .mha .mhd .npz .npy)')
    parser.add_argument('--sidecar', metavar='YAML', default=None,
                        help='sidecar with geometry overrides (default: FILE.yaml when it exists)')
    parser.add_argument('--no-sidecar', action='store_true', help='ignore FILE.yaml')
    parser.add_argument('--orientation', choices=('file', 'voxel'), default=None,
                        help="'file': apply the file's affine / direction (default, or the sidecar's); "
                             "'voxel': take the voxel axes as stored")
    parser.add_argument('--spacing', type=float, nargs=3, metavar=('SX', 'SY', 'SZ'), default=None,
                        help='voxel spacing in mm along the volume x, y, z (overrides the file and the sidecar)')
    parser.add_argument('--sector-angle-deg', type=float, default=75.0,
                        help="the fan's opening angle (degrees; default 75, as training)")
    parser.add_argument('--sector-depth-mm', type=float, default=150.0,
                        help="the fan's depth (mm; default 150, as training)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest='action', metavar='ACTION', required=True)
    info = sub.add_parser('info', help='what the file holds and what was assumed (text)',
                          description='Shape, spacing, frames, centre, radius, base pose and the notes of the loader.')
    _loader_options(info)
    info.add_argument('--json', metavar='OUT', type=Path, default=None, help='also write the facts as JSON')
    preview = sub.add_parser('preview', help='the base-pose slice and the three orthogonal planes (PNG)',
                             description='Draw the base-pose slice with its fan and the orthogonal planes '
                                         'through the centre with the sector, beam, apex and orbit sphere.')
    _loader_options(preview)
    preview.add_argument('--out', metavar='PNG', type=Path, required=True, help='where to write the picture')
    preview.add_argument('--phase', type=float, default=0.0, help='cardiac phase in cycles (default 0)')


def _load(args: argparse.Namespace) -> Any:
    from echoposed_sim.volume_io import load_volume

    sidecar: bool | str = False if args.no_sidecar else (args.sidecar or True)
    return load_volume(args.file, sidecar=sidecar, orientation=args.orientation, spacing=args.spacing)


def _sector(args: argparse.Namespace) -> Any:
    from echoposed_sim.sector import SectorError, SectorGeometry
    from echoposed_sim.volume_preview import PREVIEW_SECTOR

    if not 0 < args.sector_angle_deg < 180:
        raise UsageError(f'--sector-angle-deg {args.sector_angle_deg}; expected an angle in (0, 180) degrees')
    if not (math.isfinite(args.sector_depth_mm) and args.sector_depth_mm > 0):
        raise UsageError(f'--sector-depth-mm {args.sector_depth_mm}; expected a positive depth in mm')
    try:
        return SectorGeometry(math.radians(args.sector_angle_deg), args.sector_depth_mm, PREVIEW_SECTOR.height,
                              PREVIEW_SECTOR.width)
    except SectorError as exc:
        raise UsageError(str(exc)) from None


def _facts(volume: Any, sector: Any) -> dict[str, Any]:
    from echoposed_sim.volume_io import volume_notes
    from echoposed_sim.volume_preview import base_geometry

    g = base_geometry(volume, sector)
    return {'name': volume.name, 'shape_tzyx': list(volume.data.shape), 'dtype': str(volume.data.dtype),
            'spacing_mm': volume.spacing.tolist(), 'extent_mm': volume.extent_mm.tolist(), 'frames': volume.frames,
            'cycle_s': volume.cycle_s, 'centre_mm': volume.centre.tolist(), 'radius_mm': volume.radius,
            'apex_mm': g['apex'].tolist(), 'orbit_axis': g['orbit_axis'].tolist(), 'beam': g['beam'].tolist(),
            'base_orbit': volume.base_orbit.tolist(), 'base_probe': volume.base_probe.tolist(),
            'views': sorted(volume.views), 'fan_inside_fraction': g['inside_fraction'],
            'orientation': (volume.meta.get('file') or {}).get('orientation'), 'notes': volume_notes(volume)}


def run(args: argparse.Namespace) -> int:
    from echoposed_sim.volume_preview import volume_summary, write_preview

    sector = _sector(args)
    volume = _load(args)
    if args.action == 'info':
        print('\n'.join(volume_summary(volume, sector)))
        if args.json is not None:
            try:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(_facts(volume, sector), indent=1) + '\n')
            except OSError as exc:
                raise UsageError(f'--json {args.json}: cannot write it: {exc}') from None
        return 0
    if not math.isfinite(args.phase):
        raise UsageError(f'--phase {args.phase}; expected a finite number of cycles')
    try:
        path = write_preview(volume, args.out, sector, args.phase)
    except OSError as exc:
        raise UsageError(f'--out {args.out}: cannot write the picture: {exc}') from None
    print('\n'.join(volume_summary(volume, sector)))
    print(f'wrote {path}')
    return 0
