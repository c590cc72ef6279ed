"""The heart frame in the PyBullet scene, and the one place where millimetres become metres.

Two frames meet here:

- V, the volume (heart) frame of docs/method.md section 1, in **millimetres**: everything the simulator
  exchanges (poses, apex positions, ``centre``, ``radius``) is in V.
- W, the PyBullet scene frame, in **metres**, z up: table, patient, arm.

``HeartFrame`` holds the fixed rigid placement of V in W (rotation ``R_WV`` (3, 3), origin
``t_WV`` (3,) m) and converts points, directions and rotations both ways. No other module of
``echoposed_sim.world`` scales lengths, except through :data:`MM_PER_M`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ['MM_PER_M', 'HeartFrame']

MM_PER_M = 1000.0

Array = NDArray[np.float64]


@dataclass(frozen=True)
class HeartFrame:
    """Pose of the volume frame V in the scene frame W: ``p_W = R_WV (p_V / 1000) + t_WV``.

    R_WV: (3, 3) rotation, columns = V's axes in W. t_WV: (3,) metres, V's origin in W.
    """

    R_WV: Array
    t_WV: Array  # noqa: N815 (frame notation: from V to W)

    @classmethod
    def placing(cls, R_window: ArrayLike, p_window_m: ArrayLike, R_base: ArrayLike,
                o_base_mm: ArrayLike) -> HeartFrame:
        """Place V so that the probe frame ``(R_base, o_base_mm)`` given in V lands on the window frame.

        R_window (3, 3), p_window_m (3,) m: the probe frame at the apical window, in W.
        R_base (3, 3), o_base_mm (3,) mm: the same probe frame in V (the volume's base pose).
        """
        R_window = np.asarray(R_window, dtype=np.float64)
        R_base = np.asarray(R_base, dtype=np.float64)
        R_WV = R_window @ R_base.T
        t_WV = np.asarray(p_window_m, dtype=np.float64) - R_WV @ (np.asarray(o_base_mm, dtype=np.float64) / MM_PER_M)
        return cls(R_WV, t_WV)

    def point_to_scene(self, p_mm: ArrayLike) -> Array:
        """(3,) mm in V -> (3,) m in W."""
        return self.R_WV @ (np.asarray(p_mm, dtype=np.float64) / MM_PER_M) + self.t_WV

    def point_from_scene(self, p_m: ArrayLike) -> Array:
        """(3,) m in W -> (3,) mm in V."""
        return self.R_WV.T @ (np.asarray(p_m, dtype=np.float64) - self.t_WV) * MM_PER_M

    def rotation_to_scene(self, R: ArrayLike) -> Array:
        """Orientation (3, 3) in V -> in W."""
        return self.R_WV @ np.asarray(R, dtype=np.float64)

    def rotation_from_scene(self, R_W: ArrayLike) -> Array:
        """Orientation (3, 3) in W -> in V."""
        return self.R_WV.T @ np.asarray(R_W, dtype=np.float64)

    @staticmethod
    def speed_to_mm(v_m_per_s: ArrayLike) -> Array:
        """Linear velocity (3,) m/s -> mm/s (the frame's axes are unchanged)."""
        return np.asarray(v_m_per_s, dtype=np.float64) * MM_PER_M
