"""The 2D sector (fan) an echo image shows, and the pixel -> probe-frame mapping (docs/method.md section 2).

Probe frame P (mm): origin at the sector apex, ``z`` = central beam (into the body), ``x`` =
lateral, ``y`` = elevation. An ``H x W`` image shows the x-z plane: row ``i`` sits at depth
``z_i`` (row 0 at the probe, the last row at ``depth_mm``), column ``j`` at lateral
``x_j = (j - (W - 1) / 2) * col_mm``, symmetric about ``x = 0`` so that ``fliplr`` is exactly
``x -> -x``. A pixel is in the sector when its point ``(x, 0, z) = (rho sin phi, 0, rho cos phi)``
has ``rho <= depth_mm`` and ``|phi| <= angle_rad / 2``; other pixels are 0 in every slice.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from echoposed_ros.errors import EchoposedError

__all__ = ['SectorError', 'SectorGeometry']


class SectorError(EchoposedError):
    """Sector parameters that describe no usable fan (the message names the field and value)."""


@dataclass(frozen=True)
class SectorGeometry:
    """Fan geometry and image size of a 2D echo slice.

    angle_rad:    full opening angle of the fan (rad), in (0, pi); default 75 degrees
    depth_mm:     fan radius D (mm): deepest sample, at the last row; default 150 mm (adult
                  apical views show the atria at 140-160 mm)
    height, width: image size H x W in pixels (default 128 x 128)
    square_pixels: False (default): rows span exactly [0, D] and columns exactly the fan's width
                  ``2 D sin(angle / 2)`` (pixels are then not square); True: one pixel size for
                  both axes (the larger of the two), so the image is not stretched and the
                  fan fits with spare rows below it.
    """

    angle_rad: float = float(np.deg2rad(75.0))
    depth_mm: float = 150.0
    height: int = 128
    width: int = 128
    square_pixels: bool = False

    def __post_init__(self) -> None:
        a, d = float(self.angle_rad), float(self.depth_mm)
        if not (np.isfinite(a) and 0.0 < a < np.pi):
            raise SectorError(f'sector angle_rad must be in (0, pi), got {self.angle_rad!r}')
        if not (np.isfinite(d) and d > 0.0):
            raise SectorError(f'sector depth_mm must be positive and finite, got {self.depth_mm!r}')
        for name in ('height', 'width'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
                raise SectorError(f'sector {name} must be an integer >= 2 pixels, got {value!r}')
        object.__setattr__(self, 'angle_rad', a)
        object.__setattr__(self, 'depth_mm', d)
        object.__setattr__(self, 'height', int(self.height))
        object.__setattr__(self, 'width', int(self.width))
        object.__setattr__(self, 'square_pixels', bool(self.square_pixels))

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape (H, W)."""
        return (self.height, self.width)

    @property
    def half_width_mm(self) -> float:
        """Lateral half-width of the fan at its widest (mm): ``D sin(angle / 2)``."""
        return self.depth_mm * float(np.sin(self.angle_rad / 2))

    @property
    def pixel_mm(self) -> tuple[float, float]:
        """(row_mm, col_mm): pixel size along probe z (rows) and x (columns)."""
        row = self.depth_mm / (self.height - 1)
        col = 2.0 * self.half_width_mm / (self.width - 1)
        if self.square_pixels:
            row = col = max(row, col)
        return (row, col)

    @cached_property
    def z_mm(self) -> np.ndarray:
        """(H,) float64 depth of each row along probe z (mm); row 0 is at the apex."""
        z = np.arange(self.height, dtype=np.float64) * self.pixel_mm[0]
        z.flags.writeable = False
        return z

    @cached_property
    def x_mm(self) -> np.ndarray:
        """(W,) float64 lateral position of each column along probe x (mm); exactly antisymmetric."""
        x = (np.arange(self.width, dtype=np.float64) - (self.width - 1) / 2.0) * self.pixel_mm[1]
        x.flags.writeable = False
        return x

    @cached_property
    def points(self) -> np.ndarray:
        """(H, W, 3) float64 probe-frame point ``(x_j, 0, z_i)`` (mm) of every pixel (in the fan or not)."""
        p = np.zeros((self.height, self.width, 3))
        p[..., 0] = self.x_mm[None, :]
        p[..., 2] = self.z_mm[:, None]
        p.flags.writeable = False
        return p

    @cached_property
    def polar(self) -> tuple[np.ndarray, np.ndarray]:
        """(rho, phi), each (H, W) float64: depth ``rho`` (mm) and beam angle ``phi`` (rad, + towards +x)."""
        x, z = self.points[..., 0], self.points[..., 2]
        rho, phi = np.hypot(x, z), np.arctan2(x, z)
        rho.flags.writeable = False
        phi.flags.writeable = False
        return rho, phi

    @cached_property
    def mask(self) -> np.ndarray:
        """(H, W) bool, True for pixels inside the fan (``rho <= D`` and ``|phi| <= angle / 2``).

        Symmetric under ``fliplr``. The angular test is ``|x| <= z tan(angle / 2)``, so the apex
        row holds only the apex itself (in the fan when W is odd).
        """
        x, z = self.points[..., 0], self.points[..., 2]
        inside = (x * x + z * z <= self.depth_mm ** 2) & (np.abs(x) <= z * np.tan(self.angle_rad / 2))
        inside.flags.writeable = False
        return inside

    @cached_property
    def inside_index(self) -> np.ndarray:
        """(M,) int64 flat (row-major) indices of the in-fan pixels of an H x W image."""
        idx = np.flatnonzero(self.mask)
        idx.flags.writeable = False
        return idx

    def with_size(self, height: int, width: int) -> SectorGeometry:
        """The same fan drawn into a ``height x width`` image."""
        return SectorGeometry(self.angle_rad, self.depth_mm, height, width, self.square_pixels)
