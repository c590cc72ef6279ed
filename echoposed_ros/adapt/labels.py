"""The arm's probe poses -> SO(3) x SO(3) labels for the pairwise loss, relative to the sweep's start.

The pairwise loss (docs/method.md section 3) sees only relative poses: a constant left factor on
every label leaves it unchanged. So the start's unknown pose can be taken as ``(I, I)``, and each
frame's label follows from its probe pose relative to the start's, read in the start's probe axes
(x lateral, y elevation, z beam):

- the heart centre is taken on the start's beam, ``radius`` deep (the orbit model of the
  simulator and of the controller's Cartesian twist);
- the orbit factor ``R_v`` is the twist-free swing taking the beam axis ``e_z`` to the direction
  from the apex to that centre; the probe factor is ``R_p = R_v^T O`` with ``O`` the probe
  orientation relative to the start's (``R_v R_p = O``, docs/method.md section 2).

Turns and tilts about the apex are exact whatever the start (``R_v = I``, ``R_p = O``). Slides are
exact when the start's beam points at the heart centre; with the start tilted by ``a`` their orbit
labels are conjugated by up to ``a``, a small error for small slides. An apex off the sphere of
``radius`` about the centre (the probe pressed in or lifted) is reported by :func:`radial_error_m`.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from echoposed_ros.geometry import so3_exp

from . import AdaptError

__all__ = ['arm_to_labels', 'radial_error_m']

Array = NDArray[np.float64]


def _check(R: ArrayLike, apex: ArrayLike, radius: float) -> tuple[Array, Array, float]:
    R = np.asarray(R, dtype=np.float64)
    apex = np.asarray(apex, dtype=np.float64)
    if R.ndim != 3 or R.shape[1:] != (3, 3) or apex.shape != (R.shape[0], 3) or R.shape[0] < 1:
        raise AdaptError(f'arm poses: orientations {R.shape} and apexes {apex.shape}; expected (N, 3, 3) and '
                         '(N, 3), N >= 1')
    if not (np.all(np.isfinite(R)) and np.all(np.isfinite(apex))):
        raise AdaptError('arm poses hold NaN or inf')
    err = np.abs(R @ np.swapaxes(R, 1, 2) - np.eye(3)).max(axis=(1, 2))
    if np.any(err > 1e-4) or np.any(np.linalg.det(R) < 0):
        i = int(np.argmax(err))
        raise AdaptError(f'arm pose {i}: orientation is not a rotation (|R R^T - I| = {err[i]:.2g})')
    if not (np.isfinite(radius) and radius > 0):
        raise AdaptError(f'orbit radius = {radius!r}; expected a positive length (m)')
    return R, apex, float(radius)


def _centre(R0: Array, a0: Array, radius: float) -> Array:
    return a0 + radius * R0[:, 2]


def arm_to_labels(R: ArrayLike, apex: ArrayLike, radius: float) -> tuple[Array, Array]:
    """Probe orientations ``R`` (N, 3, 3) (columns = probe axes in any fixed frame) and apexes ``apex``
    (N, 3) (m, same frame), frame 0 the sweep's start, ``radius`` (m) -> (orbit (N, 3, 3), probe
    (N, 3, 3)), canonical gauge (``R_v`` twist-free), frame 0 at ``(I, I)``."""
    R, apex, radius = _check(R, apex, radius)
    R0, a0 = R[0], apex[0]
    c0 = _centre(R0, a0, radius)
    d = (c0 - apex) @ R0                           # apex -> centre in the start's probe axes
    u = d / np.linalg.norm(d, axis=1, keepdims=True)
    axis = np.cross(np.array([0.0, 0.0, 1.0]), u)  # swing axis (z component 0)
    s = np.linalg.norm(axis, axis=1, keepdims=True)
    angle = np.arctan2(s[:, 0], u[:, 2])
    rotvec = np.where(s > 1e-12, axis / np.maximum(s, 1e-300), 0.0) * angle[:, None]
    orbit = so3_exp(rotvec)
    relative = np.swapaxes(R0, 0, 1)[None] @ R     # orientation in the start's probe axes
    probe = np.swapaxes(orbit, 1, 2) @ relative
    return orbit, probe


def radial_error_m(apex: ArrayLike, R0: ArrayLike, radius: float) -> Array:
    """Distance (m) of each apex (N, 3) from the sphere of ``radius`` about the centre assumed on the
    start's beam (start orientation ``R0``, apex 0 the start)."""
    apex = np.asarray(apex, dtype=np.float64)
    R0 = np.asarray(R0, dtype=np.float64)
    c0 = _centre(R0, apex[0], float(radius))
    return np.abs(np.linalg.norm(apex - c0, axis=1) - float(radius))
