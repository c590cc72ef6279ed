"""The volume type every part of the simulator and the training pipeline shares.

Frames and units (docs/method.md section 1): the volume frame V is in millimetres. ``data`` is indexed
``[t, k, j, i]`` (time, z, y, x); the centre of voxel ``[t, k, j, i]`` sits at
``(i * spacing[0], j * spacing[1], k * spacing[2])`` in V. A probe pose ``(R_v, R_p)`` places the
sector apex at ``o = centre - radius * R_v e_z`` with orientation ``R = R_v R_p``.

Time: ``data.shape[0]`` frames spread evenly over one cardiac cycle of ``cycle_s`` seconds;
slicing takes a cardiac phase in cycles (``t`` in [0, 1), periodic, linear between frames).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from echoposed_ros.errors import EchoposedError

__all__ = ['StandardView', 'Volume', 'VolumeError']


class VolumeError(EchoposedError):
    """A volume (or a volume file) that cannot be used; the message names it and the problem."""


@dataclass(frozen=True)
class StandardView:
    """A named probe pose in a volume's own frame: rotation matrices (3, 3), canonical gauge."""

    orbit: np.ndarray
    probe: np.ndarray


@dataclass(frozen=True)
class Volume:
    """A 3D+t echo volume with the geometry the slicer and training need.

    data:        (T, Z, Y, X) float32 in [0, 1] or uint8 (0..255 meaning [0, 1]); T >= 1
    spacing:     (3,) mm along the volume frame's (x, y, z)
    centre:      (3,) mm, the point ``c`` the orbit turns about (the LV centre for a phantom)
    radius:      mm, orbit radius ``r`` (distance from the sector apex to ``c`` at every pose)
    base_orbit, base_probe: (3, 3) the apical base pose (the acquisition probe); canonical gauge
    cycle_s:     s, duration of one cardiac cycle (the T frames span it evenly)
    views:       named standard views ("A4C", "A2C", "A3C") when known, else empty
    name:        where it came from (file path or "phantom:<seed>"), used in error messages
    meta:        free-form extra facts (phantom parameters, style, ...), JSON-serialisable
    """

    data: np.ndarray
    spacing: np.ndarray
    centre: np.ndarray
    radius: float
    base_orbit: np.ndarray = field(default_factory=lambda: np.eye(3))
    base_probe: np.ndarray = field(default_factory=lambda: np.eye(3))
    cycle_s: float = 1.0
    views: dict[str, StandardView] = field(default_factory=dict)
    name: str = 'volume'
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        data = self.data
        if not isinstance(data, np.ndarray) or data.ndim != 4:
            raise VolumeError(f'{self.name}: data must be a (T, Z, Y, X) array, '
                              f'got shape {getattr(data, "shape", None)}')
        if data.dtype not in (np.float32, np.uint8):
            raise VolumeError(f'{self.name}: data dtype must be float32 or uint8, got {data.dtype}')
        if min(data.shape[1:]) < 2:
            raise VolumeError(f'{self.name}: volume is not 3D (shape {data.shape})')
        spacing = np.asarray(self.spacing, dtype=np.float64)
        if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
            raise VolumeError(f'{self.name}: spacing must be 3 positive finite mm values, got {self.spacing}')
        centre = np.asarray(self.centre, dtype=np.float64)
        if centre.shape != (3,) or not np.all(np.isfinite(centre)):
            raise VolumeError(f'{self.name}: centre must be 3 finite mm values, got {self.centre}')
        if not (np.isfinite(self.radius) and self.radius > 0):
            raise VolumeError(f'{self.name}: orbit radius must be positive and finite, got {self.radius}')
        if not (np.isfinite(self.cycle_s) and self.cycle_s > 0):
            raise VolumeError(f'{self.name}: cycle_s must be positive and finite, got {self.cycle_s}')
        object.__setattr__(self, 'spacing', spacing)
        object.__setattr__(self, 'centre', centre)

    @property
    def frames(self) -> int:
        """Number of time frames T over one cardiac cycle."""
        return int(self.data.shape[0])

    @property
    def extent_mm(self) -> np.ndarray:
        """(3,) mm, position of the last voxel centre along (x, y, z)."""
        z, y, x = self.data.shape[1:]
        return np.array([x - 1, y - 1, z - 1], dtype=np.float64) * self.spacing
