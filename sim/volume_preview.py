"""What a volume looks like to the simulator: a text summary and a preview picture of its geometry.

Frames and units as :mod:`echoposed_sim.volume` (volume frame V, mm). The base pose
``(R_v, R_p)`` puts the sector apex at ``o = c - r R_v e_z`` with orientation ``R = R_v R_p``; the
sector's plane is the probe's x-z plane ``o + R (x, 0, z)`` and its central beam ``o + R (0, 0, z)``.
:func:`volume_summary` gives those facts as lines of text (with the loader's notes,
:func:`~echoposed_sim.volume_io.volume_notes`); :func:`preview_figure` draws the base-pose slice
with its fan outline and the three orthogonal planes through the centre ``c`` with the sector,
the beam, the apex and the orbit sphere's trace over them, so a wrong apex or beam shows at once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .sector import SectorGeometry
from .volume import Volume, VolumeError
from .volume_io import volume_notes

__all__ = ['PREVIEW_DPI', 'PREVIEW_SECTOR', 'PREVIEW_SIZE_IN', 'base_geometry', 'preview_figure', 'volume_summary',
           'write_preview']

#: The preview's size in inches (width, height) and its resolution: the PNG is 1500 x 1000 pixels.
PREVIEW_SIZE_IN = (15.0, 10.0)
PREVIEW_DPI = 100
#: The fan drawn by default: the training default (75 degrees, 150 mm), 256 x 256 pixels.
PREVIEW_SECTOR = SectorGeometry(height=256, width=256)

_AXIS_NAMES = ('x', 'y', 'z')
# (normal axis, horizontal axis, vertical axis) of each orthogonal plane through the centre;
# the vertical axis points down in the picture when it is z (depth, as in an echo image).
_PLANES = ((1, 0, 2), (0, 1, 2), (2, 0, 1))


def _matrix_to_xyzw(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation
    q = Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_quat()
    return -q if q[3] < 0 else q


def base_geometry(volume: Volume, sector: SectorGeometry) -> dict[str, Any]:
    """The base pose's geometry in the volume frame (mm): ``apex`` o (3,), ``orbit_axis`` R_v e_z (3,),
    ``beam`` R e_z (3,), ``lateral`` R e_x (3,), ``fan`` (M, 3) the fan's outline (both edges and
    the arc, closed), ``depth`` the fan's radius (mm), ``centre_in_probe`` (3,) ``R^T (c - o)``,
    ``inside_fraction`` the share of the fan's pixels whose points lie inside the box of voxel centres."""
    orbit = np.asarray(volume.base_orbit, dtype=np.float64)
    R = orbit @ np.asarray(volume.base_probe, dtype=np.float64)
    apex = volume.centre - volume.radius * orbit[:, 2]
    half = sector.angle_rad / 2
    phi = np.linspace(-half, half, 61)
    d = sector.depth_mm
    outline = np.concatenate([[[0.0, 0.0]], np.stack([d * np.sin(phi), d * np.cos(phi)], axis=1), [[0.0, 0.0]]])
    fan = apex + outline[:, :1] * R[:, 0] + outline[:, 1:] * R[:, 2]
    pts = apex + sector.points[sector.mask] @ R.T
    inside = np.all((pts >= 0) & (pts <= volume.extent_mm), axis=1)
    return {'apex': apex, 'orbit_axis': orbit[:, 2], 'beam': R[:, 2], 'lateral': R[:, 0], 'fan': fan, 'depth': d,
            'centre_in_probe': R.T @ (volume.centre - apex), 'inside_fraction': float(inside.mean())}


def volume_summary(volume: Volume, sector: SectorGeometry = PREVIEW_SECTOR) -> list[str]:
    """Lines of text: shape, spacing, extent, frames and cycle, centre, radius, apex and beam, base
    pose (quaternions x, y, z, w), views, how much of the base fan falls inside the volume, and the
    loader's notes."""
    g = base_geometry(volume, sector)
    T, Z, Y, X = volume.data.shape
    file = volume.meta.get('file') or {}

    def vec(v: np.ndarray, digits: int = 1) -> str:
        return '[' + ', '.join(f'{x:.{digits}f}' for x in v) + ']'

    cp = g['centre_in_probe']
    lines = [f'volume: {volume.name}' + (f' ({file["format"]})' if 'format' in file else ''),
             f'shape: {T} x {Z} x {Y} x {X} (T, Z, Y, X), {volume.data.dtype}',
             f'spacing: {vec(volume.spacing, 4)} mm (x, y, z); extent {vec(volume.extent_mm)} mm',
             f'frames: {T} over a cycle of {volume.cycle_s:g} s',
             f'centre: {vec(volume.centre)} mm; orbit radius {volume.radius:.1f} mm',
             f'apex: {vec(g["apex"])} mm; orbit axis (R_v e_z) {vec(g["orbit_axis"], 3)}; '
             f'central beam (R e_z) {vec(g["beam"], 3)}',
             f'base pose: orbit {vec(_matrix_to_xyzw(volume.base_orbit), 4)}, probe '
             f'{vec(_matrix_to_xyzw(volume.base_probe), 4)} (quaternions x, y, z, w)',
             f'views: {", ".join(sorted(volume.views)) or "none"}',
             f'base fan ({np.degrees(sector.angle_rad):.0f} deg, {sector.depth_mm:.0f} mm): '
             f'{100 * g["inside_fraction"]:.0f} % inside the volume; the centre at depth {cp[2]:.1f} mm, '
             f'lateral {cp[0]:.1f} mm, elevation {cp[1]:.1f} mm']
    notes = volume_notes(volume)
    if notes:
        lines += ['notes:'] + [f'  - {n}' for n in notes]
    return lines


def _plane_image(volume: Volume, normal: int, frame: int) -> np.ndarray:
    """The voxel plane nearest the centre across axis ``normal``, as (vertical, horizontal) float in [0, 1]."""
    index = int(np.clip(np.rint(volume.centre[normal] / volume.spacing[normal]), 0,
                        volume.data.shape[3 - normal] - 1))
    cube = volume.data[frame]                      # (Z, Y, X)
    plane = np.take(cube, index, axis=2 - normal)  # the two other axes, in (Z, Y, X) order
    plane = plane.astype(np.float32) / (255.0 if volume.data.dtype == np.uint8 else 1.0)
    # rows = the higher of the two remaining axes (z over y over x), columns = the lower one
    return plane


def _draw_plane(ax: Any, volume: Volume, g: dict, normal: int, horizontal: int, vertical: int,
                frame: int) -> None:
    image = _plane_image(volume, normal, frame)
    if horizontal > vertical:
        image = image.T
    ext = volume.extent_mm
    hs, vs = volume.spacing[horizontal] / 2, volume.spacing[vertical] / 2
    down = vertical == 2
    extent = (-hs, ext[horizontal] + hs, ext[vertical] + vs, -vs) if down else \
        (-hs, ext[horizontal] + hs, -vs, ext[vertical] + vs)
    ax.imshow(image, cmap='gray', vmin=0.0, vmax=1.0, extent=extent, origin='upper' if down else 'lower',
              interpolation='nearest')
    c, r = volume.centre, volume.radius
    a = np.linspace(0, 2 * np.pi, 181)
    ax.plot(c[horizontal] + r * np.cos(a), c[vertical] + r * np.sin(a), ':', color='lightskyblue', lw=1.2,
            label='orbit sphere')
    fan = g['fan']
    ax.plot(fan[:, horizontal], fan[:, vertical], '--', color='gold', lw=1.2, label='sector (projected)')
    beam = np.stack([g['apex'], g['apex'] + g['depth'] * g['beam']])
    ax.plot(beam[:, horizontal], beam[:, vertical], '-', color='orange', lw=1.5, label='beam')
    ax.plot(g['apex'][horizontal], g['apex'][vertical], 'v', color='red', ms=9, label='apex')
    ax.plot(c[horizontal], c[vertical], '+', color='cyan', ms=12, mew=2, label='centre')
    points = np.concatenate([fan[:, [horizontal, vertical]],
                             [[c[horizontal] - r, c[vertical] - r], [c[horizontal] + r, c[vertical] + r]],
                             [[0, 0], [ext[horizontal], ext[vertical]]]])
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = 0.04 * (hi - lo).max()
    ax.set_xlim(lo[0] - pad, hi[0] + pad)
    ax.set_ylim((hi[1] + pad, lo[1] - pad) if down else (lo[1] - pad, hi[1] + pad))
    ax.set_aspect('equal')
    ax.set_xlabel(f'{_AXIS_NAMES[horizontal]} (mm)')
    ax.set_ylabel(f'{_AXIS_NAMES[vertical]} (mm)' + (' (down)' if down else ''))
    ax.set_title(f'{_AXIS_NAMES[horizontal]}-{_AXIS_NAMES[vertical]} plane through the centre '
                 f'({_AXIS_NAMES[normal]} = {c[normal]:.1f} mm)', fontsize=10)


def preview_figure(volume: Volume, sector: SectorGeometry = PREVIEW_SECTOR, phase: float = 0.0) -> Any:
    """A matplotlib Figure (Agg, :data:`PREVIEW_SIZE_IN` at :data:`PREVIEW_DPI`): the slice at the base
    pose and cardiac ``phase`` (cycles) with the fan's outline and the centre, the x-z, y-z and x-y
    planes through the centre (frame nearest ``phase``) with the sector, beam, apex and orbit sphere
    drawn over them, and the summary with the loader's notes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .slicer import slice_volume

    if not np.isfinite(phase):
        raise VolumeError(f'{volume.name}: preview phase must be a finite number of cycles, got {phase!r}')
    g = base_geometry(volume, sector)
    frame = int(np.rint((phase % 1.0) * volume.frames)) % volume.frames
    fig = Figure(figsize=PREVIEW_SIZE_IN, dpi=PREVIEW_DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 3, left=0.05, right=0.98, top=0.9, bottom=0.06, wspace=0.28, hspace=0.3)

    ax = fig.add_subplot(grid[0, 0])
    image = slice_volume(volume, volume.base_orbit, volume.base_probe, phase, sector)
    row_mm, col_mm = sector.pixel_mm
    x, z = sector.x_mm, sector.z_mm
    ax.imshow(image, cmap='gray', vmin=0.0, vmax=1.0, interpolation='nearest', aspect='equal',
              extent=(x[0] - col_mm / 2, x[-1] + col_mm / 2, z[-1] + row_mm / 2, z[0] - row_mm / 2))
    phi = np.linspace(-sector.angle_rad / 2, sector.angle_rad / 2, 61)
    d = sector.depth_mm
    ax.plot(np.concatenate([[0], d * np.sin(phi), [0]]), np.concatenate([[0], d * np.cos(phi), [0]]), '--',
            color='gold', lw=1.2, label='sector')
    ax.plot([0, 0], [0, d], '-', color='orange', lw=1.0, alpha=0.6, label='beam')
    cp = g['centre_in_probe']
    ax.plot(cp[0], cp[2], '+', color='cyan', ms=12, mew=2,
            label=f'centre ({cp[1]:+.1f} mm off the plane)')
    ax.set_xlabel('probe x, lateral (mm)')
    ax.set_ylabel('probe z, depth (mm)')
    ax.set_title(f'base pose slice, phase {phase % 1.0:.2f} '
                 f'({100 * g["inside_fraction"]:.0f} % of the fan inside the volume)', fontsize=10)
    ax.legend(loc='lower left', fontsize=7, framealpha=0.6)

    for cell, (normal, horizontal, vertical) in zip((grid[0, 1], grid[0, 2], grid[1, 0]), _PLANES, strict=True):
        _draw_plane(fig.add_subplot(cell), volume, g, normal, horizontal, vertical, frame)
    handles, labels = fig.axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc='lower right', ncol=len(labels), fontsize=9, frameon=False)

    text = fig.add_subplot(grid[1, 1:])
    text.axis('off')
    lines = volume_summary(volume, sector)[1:]
    text.text(0.0, 1.0, '\n'.join(_wrap(line, 120) for line in lines), va='top', ha='left', family='monospace',
              fontsize=8, transform=text.transAxes)
    fig.suptitle(f'{volume.name}: base pose and orthogonal planes (volume frame, mm; frame {frame} of '
                 f'{volume.frames})', fontsize=12)
    return fig


def _wrap(line: str, width: int) -> str:
    import textwrap
    return '\n'.join(textwrap.wrap(line, width, subsequent_indent='      ')) or line


def write_preview(volume: Volume, path: str | Path, sector: SectorGeometry = PREVIEW_SECTOR,
                  phase: float = 0.0) -> Path:
    """Write :func:`preview_figure` as a PNG of 1500 x 1000 pixels to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = preview_figure(volume, sector, phase)
    fig.savefig(path, format='png', dpi=PREVIEW_DPI)
    return path
