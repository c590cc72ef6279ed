"""Where the sector fan lies in an image, and finding it in an image of unknown geometry.

Pixel coordinates are continuous ``(row, col)`` with pixel centres at integers (row 0 at the
top, the probe side). A fan is described in these coordinates by :class:`FanGeometry`: the
apex, the full opening angle, and the depth (the fan radius D) expressed in rows and in
columns (the two differ when pixels are not square, as in the simulator's default images).
A point ``(x, z)`` of the probe's imaging plane, in units of D, sits at
``row = apex_row + z * depth_rows``, ``col = apex_col + x * depth_cols``; it is in the fan when
``x^2 + z^2 <= 1`` and ``|x| <= z tan(angle / 2)`` (the simulator's rule, docs/method.md section 2).

:func:`detect_fan` measures the fan of an image with square pixels from its non-zero region:
it fits the two straight fan edges (Theil-Sen lines through the convex envelope of the per-row
extents, so dark tissue touching the border does not pull an edge inwards, over the rows from
the top where each edge is still straight, so a clipped fan does not bend it), takes
their intersection as the apex, the angle between them as the opening angle, and the 75th
percentile over angular bins of the farthest non-zero pixel as the depth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, stats

from .errors import EstimatorError

__all__ = ['FanGeometry', 'detect_fan', 'fan_region', 'model_fan']


@dataclass(frozen=True)
class FanGeometry:
    """A sector fan in pixel coordinates (see module docstring).

    apex_row, apex_col: apex position (pixels; may lie outside the image, e.g. above row 0
    when the scanner crops the near field). angle_rad: full opening angle, in (0, pi).
    depth_rows, depth_cols: the fan radius D measured in rows and in columns (pixels; equal
    for square pixels).
    """

    apex_row: float
    apex_col: float
    angle_rad: float
    depth_rows: float
    depth_cols: float

    def __post_init__(self) -> None:
        vals = (self.apex_row, self.apex_col, self.angle_rad, self.depth_rows, self.depth_cols)
        if not all(math.isfinite(float(v)) for v in vals):
            raise EstimatorError(f'fan geometry {self}: every field must be finite')
        if not 0.0 < self.angle_rad < math.pi:
            raise EstimatorError(f'fan geometry: angle_rad = {self.angle_rad!r}; expected a value in (0, pi)')
        if self.depth_rows <= 0 or self.depth_cols <= 0:
            raise EstimatorError(f'fan geometry: depth_rows = {self.depth_rows!r}, depth_cols = '
                                 f'{self.depth_cols!r}; expected positive pixel counts')

    @classmethod
    def square(cls, apex_row: float, apex_col: float, angle_rad: float, depth_px: float) -> FanGeometry:
        """A fan in an image with square pixels (depth ``depth_px`` pixels along rows and columns)."""
        return cls(float(apex_row), float(apex_col), float(angle_rad), float(depth_px), float(depth_px))

    def mask(self, shape: tuple[int, int], angle_rad: float | None = None, radius: float = 1.0) -> np.ndarray:
        """(H, W) bool: pixel centres inside the fan (or inside a narrower ``angle_rad`` / shorter
        ``radius`` (units of D) fan with the same apex and axis)."""
        x, z = self.plane_coords(shape)
        half = self.angle_rad / 2 if angle_rad is None else angle_rad / 2
        return (x * x + z * z <= radius * radius) & (np.abs(x) <= z * math.tan(half))

    def plane_coords(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(x, z), each (H, W) float64: imaging-plane coordinates of every pixel centre, units of D."""
        h, w = shape
        z = (np.arange(h, dtype=np.float64)[:, None] - self.apex_row) / self.depth_rows
        x = (np.arange(w, dtype=np.float64)[None, :] - self.apex_col) / self.depth_cols
        return np.broadcast_to(x, (h, w)), np.broadcast_to(z, (h, w))


def model_fan(height: int, width: int, angle_rad: float, square_pixels: bool = False) -> FanGeometry:
    """The fan of a model input (= a simulator slice) of ``height x width`` pixels.

    Same rule as ``echoposed_sim.sector.SectorGeometry``: apex at row 0 and the centre column
    ``(W - 1) / 2``; rows span the depth exactly (``depth_rows = H - 1``); columns span the
    fan's width ``2 D sin(angle / 2)`` exactly (``depth_cols = (W - 1) / (2 sin(angle / 2))``),
    or with ``square_pixels`` both use the larger pixel size.
    """
    row_mm = 1.0 / (height - 1)                                  # in units of D
    col_mm = 2.0 * math.sin(angle_rad / 2) / (width - 1)
    if square_pixels:
        row_mm = col_mm = max(row_mm, col_mm)
    return FanGeometry(0.0, (width - 1) / 2.0, float(angle_rad), 1.0 / row_mm, 1.0 / col_mm)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fan_region(inside: np.ndarray) -> np.ndarray:
    """The fan's region from ``inside`` (H, W) bool, the pixels brighter than the dark outside: gaps in it
    closed (dark blood and tissue inside the fan), holes filled, and the largest connected part kept (specks
    outside dropped). All False when ``inside`` is."""
    mask = np.asarray(inside, dtype=bool)
    mask = ndimage.binary_closing(mask, structure=np.ones((3, 3), bool), iterations=2, border_value=0) | mask
    return _largest_component(ndimage.binary_fill_holes(mask))


def _envelope(x: np.ndarray, y: np.ndarray, lower: bool) -> np.ndarray:
    """The lower convex (``lower``) or upper concave hull of points ``(x, y)`` (x increasing),
    evaluated at every ``x`` (Andrew's monotone chain)."""
    sign = 1.0 if lower else -1.0
    hull: list[int] = []
    for i in range(x.size):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (x[b] - x[a]) * (sign * y[i] - sign * y[a]) - (sign * y[b] - sign * y[a]) * (x[i] - x[a])
            if cross <= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    return np.interp(x, x[hull], y[hull])


def _edge_line(r: np.ndarray, edge: np.ndarray, band: float = 1.5) -> tuple[float, float]:
    """Slope and intercept of the straight part of one fan edge: the rows from the top that stay
    within ``band`` pixels of the line, refitted (Theil-Sen) twice. Where the fan is clipped (e.g.
    a slice leaving its volume) the edge bends away from the line and those rows drop out."""
    keep = np.ones(r.size, bool)
    keep[max(3, r.size // 3):] = False                 # first guess: the top third is straight
    slope, icpt, _, _ = stats.theilslopes(edge[keep], r[keep])
    for _ in range(3):
        off = np.abs(edge - (icpt + slope * r)) > band
        n = int(np.argmax(off)) if off.any() else r.size  # contiguous from the top
        if n < 3:
            break
        keep = np.zeros(r.size, bool)
        keep[:n] = True
        slope, icpt, _, _ = stats.theilslopes(edge[keep], r[keep])
    return float(slope), float(icpt)


def detect_fan(image: np.ndarray, threshold: float = 0.0, name: str = 'image',
               min_rows: int = 12) -> FanGeometry:
    """Measure the fan of a greyscale image ``(H, W)`` whose pixels outside the fan are dark.

    threshold: pixels ``> threshold`` count as inside (same units as ``image``; use a small
    positive value for scanner frames whose background is not exactly 0). Assumes square
    pixels, a fan pointing down the image (axis along the rows) with opening angle below 180
    degrees, and both straight edges visible. Raises :class:`EstimatorError` naming ``name``
    when no fan can be found.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise EstimatorError(f'{name}: fan detection needs a 2D greyscale image, got shape {img.shape}')
    mask = fan_region(np.isfinite(img) & (img > threshold))
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size < min_rows:
        raise EstimatorError(f'{name}: no sector fan found (the non-zero region spans {rows.size} rows, '
                             f'need at least {min_rows}); is the image blank or is the threshold '
                             f'{threshold:g} too high?')
    sub = mask[rows]
    cols = np.arange(mask.shape[1])
    # per-row extents, then their convex envelope: the fan is convex, and dark tissue (or the
    # volume's edge) touching the fan's border only ever moves an extent inwards
    r_all = rows.astype(np.float64)
    left = _envelope(r_all, np.where(sub, cols[None, :], mask.shape[1]).min(axis=1) - 0.5, lower=True)
    right = _envelope(r_all, np.where(sub, cols[None, :], -1).max(axis=1) + 0.5, lower=False)
    width = right - left
    # straight edges run from the apex down to the row of greatest width (then the arc bends in)
    widest = rows[int(np.argmax(width >= width.max() - 1.0))]
    top = rows[0]
    stop = top + 0.9 * (widest - top)
    use = (rows >= top + 1) & (rows <= stop)
    if use.sum() < min_rows // 2:
        raise EstimatorError(f'{name}: no sector fan found (the non-zero region does not widen with '
                             'depth like a fan: too few rows between its top and its widest row)')
    r = rows[use].astype(np.float64)
    bl, al = _edge_line(r, left[use])
    br, ar = _edge_line(r, right[use])
    if not (br - bl) > 1e-3:
        raise EstimatorError(f'{name}: no sector fan found (the edges do not diverge: slopes {bl:.3g} '
                             f'and {br:.3g} columns per row)')
    apex_row = (al - ar) / (br - bl)
    apex_col = al + bl * apex_row
    angle = math.atan(br) - math.atan(bl)
    if not 0.0 < angle < math.pi:
        raise EstimatorError(f'{name}: no sector fan found (edge angle {math.degrees(angle):.1f} degrees)')
    # depth: farthest in-fan pixel per angular bin; a dark or clipped far field only shortens a
    # bin, so take an upper quantile over bins (not the max: one attached speck would win)
    yy, xx = np.nonzero(mask)
    dz, dx = yy - apex_row, xx - apex_col
    rho = np.hypot(dz, dx) + 0.5
    phi = np.arctan2(dx, dz)
    bins = np.clip(((phi + angle / 2) / angle * 24).astype(int), 0, 23)
    far = np.full(24, np.nan)
    np.fmax.at(far, bins, rho)
    depth = float(np.nanpercentile(far, 75))
    if not depth > 0:
        raise EstimatorError(f'{name}: no sector fan found (depth {depth})')
    return FanGeometry.square(float(apex_row), float(apex_col), float(angle), depth)
