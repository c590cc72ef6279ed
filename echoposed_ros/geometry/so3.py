"""Single rotations SO(3), batched over leading axes.

Every rotation argument is a float array of shape ``(..., 3, 3)`` (any number of leading
batch axes); every rotation vector is ``(..., 3)`` in radians (axis times angle).
Quaternions are in ROS order ``(x, y, z, w)``. Rotation algebra is delegated to
:class:`scipy.spatial.transform.Rotation`; this module adds input checks, batching over
arbitrary leading axes, and a numerically stable geodesic angle.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

from .errors import GeometryError

__all__ = [
    'angle', 'check_rotation', 'check_scalar', 'check_vectors', 'exp', 'hat', 'log', 'matrix_to_quat_xyzw',
    'project_to_so3', 'quat_xyzw_to_matrix', 'rot_x', 'rot_y', 'rot_z', 'swing_twist', 'vee',
]

#: Default tolerance on ``max |R^T R - I|`` for a matrix to count as a rotation (it must also
#: have ``det R > 0``); loose enough for float32 matrices from a network or a message.
ROTATION_ATOL = 1e-5

#: Tolerance on ``| |q| - 1 |`` for a ROS quaternion (float32-safe).
QUAT_NORM_ATOL = 1e-3

Array = NDArray[np.float64]

_EYE = np.eye(3)


def _first_bad(mask: NDArray[np.bool_]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _as_float(x: ArrayLike, name: str) -> Array:
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f'{name}: not a numeric array ({exc})') from None


def check_vectors(x: ArrayLike, n: int, name: str) -> Array:
    """Return ``x`` as float64 ``(..., n)`` after checking its shape and that it is finite (else GeometryError)."""
    a = _as_float(x, name)
    if a.ndim < 1 or a.shape[-1] != n:
        raise GeometryError(f'{name}: expected shape (..., {n}), got {a.shape}')
    bad = ~np.isfinite(a)
    if bad.any():
        idx = _first_bad(bad)
        raise GeometryError(f'{name}: contains NaN or inf (value {float(a[idx])} at index {idx}); expected finite')
    return a


def check_scalar(x: object, name: str, minimum: float | None = None) -> float:
    """Return ``x`` as a finite float (``>= minimum`` if given), else raise GeometryError naming ``name``."""
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise GeometryError(f'{name}: expected a finite number, got {x!r}') from None
    if not np.isfinite(v) or (minimum is not None and v < minimum):
        bound = '' if minimum is None else f' >= {minimum:g}'
        raise GeometryError(f'{name}: expected a finite number{bound}, got {x!r}')
    return v


def check_rotation(R: ArrayLike, name: str = 'R', atol: float = ROTATION_ATOL) -> Array:
    """Return ``R`` as a float64 array ``(..., 3, 3)`` after checking it is a rotation.

    Raises :class:`GeometryError` naming ``name`` and what was wrong: the shape is not
    ``(..., 3, 3)``, an entry is NaN/inf, ``max |R^T R - I| > atol`` (not orthogonal), or
    ``det R < 0`` (a reflection). The first offending batch index is given.
    """
    a = _as_float(R, name)
    if a.ndim < 2 or a.shape[-2:] != (3, 3):
        raise GeometryError(f'{name}: expected a rotation matrix of shape (..., 3, 3), got shape {a.shape}')
    # Fast path: one orthogonality error per matrix (NaN propagates into it) and the determinant.
    with np.errstate(invalid='ignore', over='ignore'):
        E = np.swapaxes(a, -1, -2) @ a
        E -= _EYE
        err = np.abs(E).max(axis=(-2, -1)) if a.size else np.zeros(a.shape[:-2])
        det = np.linalg.det(a) if a.size else np.ones(a.shape[:-2])
    if np.all(err <= atol) and np.all(det > 0):
        return a
    finite = np.isfinite(a).all(axis=(-2, -1))
    if not finite.all():
        idx = _first_bad(~finite)
        raise GeometryError(f'{name}: contains NaN or inf at batch index {idx}: {a[idx].tolist()}')
    if not np.all(err <= atol):
        idx = _first_bad(~(err <= atol))
        raise GeometryError(
            f'{name}: not a rotation: not orthogonal, max |R^T R - I| = {err[idx]:.3g} > {atol:g} '
            f'at batch index {idx}: {a[idx].tolist()}')
    idx = _first_bad(~(det > 0))
    raise GeometryError(
        f'{name}: not a rotation: det = {det[idx]:.6g} (a reflection), expected +1 '
        f'at batch index {idx}')


def project_to_so3(M: ArrayLike, name: str = 'M') -> Array:
    """Nearest rotation (Frobenius) to each ``(..., 3, 3)`` matrix: ``U diag(1, 1, det(U V^T)) V^T``.

    Input may be any finite real matrix (e.g. a network head or a mean of rotations).
    Raises :class:`GeometryError` on bad shape or NaN/inf. For a rank-deficient input the
    result is one of several equally near rotations.
    """
    a = _as_float(M, name)
    if a.ndim < 2 or a.shape[-2:] != (3, 3):
        raise GeometryError(f'{name}: expected shape (..., 3, 3), got {a.shape}')
    finite = np.isfinite(a).all(axis=(-2, -1))
    if not finite.all():
        idx = _first_bad(~finite)
        raise GeometryError(f'{name}: contains NaN or inf at batch index {idx}')
    U, _, Vt = np.linalg.svd(a)
    d = np.sign(np.linalg.det(U @ Vt))
    d = np.where(d == 0, 1.0, d)
    U = U.copy()
    U[..., :, 2] *= d[..., None]
    return U @ Vt


def hat(w: ArrayLike) -> Array:
    """Skew matrix ``[w]_x`` of shape ``(..., 3, 3)`` with ``[w]_x v = w x v``; ``w`` is ``(..., 3)``."""
    w = check_vectors(w, 3, 'w')
    z = np.zeros(w.shape[:-1])
    x, y, zz = w[..., 0], w[..., 1], w[..., 2]
    return np.stack([np.stack([z, -zz, y], -1),
                     np.stack([zz, z, -x], -1),
                     np.stack([-y, x, z], -1)], -2)


def vee(S: ArrayLike) -> Array:
    """Inverse of :func:`hat`: ``(..., 3, 3)`` -> ``(..., 3)``, from the antisymmetric part of ``S``."""
    S = _as_float(S, 'S')
    if S.ndim < 2 or S.shape[-2:] != (3, 3):
        raise GeometryError(f'S: expected shape (..., 3, 3), got {S.shape}')
    return 0.5 * np.stack([S[..., 2, 1] - S[..., 1, 2],
                           S[..., 0, 2] - S[..., 2, 0],
                           S[..., 1, 0] - S[..., 0, 1]], -1)


def angle(R: ArrayLike, name: str = 'R') -> Array:
    """Geodesic angle of each rotation ``(..., 3, 3)`` -> ``(...)`` in radians, in ``[0, pi]``.

    Equals ``arccos((trace R - 1) / 2)`` but is computed as
    ``atan2(|vee(R)|, (trace R - 1) / 2)`` (``|vee(R)| = sin(angle)``, from the antisymmetric
    part) so it keeps full precision near 0 and near pi.
    """
    R = check_rotation(R, name)
    s = np.linalg.norm(vee(R), axis=-1)          # sin(theta)
    c = 0.5 * (np.trace(R, axis1=-2, axis2=-1) - 1.0)  # cos(theta)
    return np.arctan2(s, c)


def _rot_batch(R: Array) -> tuple[Rotation, tuple[int, ...]]:
    batch = R.shape[:-2]
    return Rotation.from_matrix(R.reshape(-1, 3, 3)), batch


def exp(omega: ArrayLike, name: str = 'omega') -> Array:
    """Rotation matrix ``(..., 3, 3)`` of rotation vectors ``omega`` ``(..., 3)`` (rad, axis * angle).

    Stable for any angle (scipy uses a series near 0).
    """
    w = check_vectors(omega, 3, name)
    if w.size == 0:
        return np.zeros(w.shape[:-1] + (3, 3))
    return Rotation.from_rotvec(w.reshape(-1, 3)).as_matrix().reshape(w.shape[:-1] + (3, 3))


def log(R: ArrayLike, name: str = 'R') -> Array:
    """Rotation vector ``(..., 3)`` (rad, norm in ``[0, pi]``) of rotations ``R`` ``(..., 3, 3)``.

    Stable near 0 and near pi (via scipy's quaternion with ``w >= 0``). At exactly pi the
    sign of the axis is arbitrary (both are correct).
    """
    R = check_rotation(R, name)
    if R.size == 0:
        return np.zeros(R.shape[:-2] + (3,))
    rot, batch = _rot_batch(R)
    return rot.as_rotvec().reshape(batch + (3,))


def _axis_rot(theta: ArrayLike, axis: int) -> Array:
    t = _as_float(theta, 'theta')
    bad = ~np.isfinite(t)
    if bad.any():
        raise GeometryError(f'theta: contains NaN or inf (value {float(t[bad].ravel()[0])}); expected finite radians')
    c, s = np.cos(t), np.sin(t)
    R = np.zeros(t.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R[..., axis, axis] = 1.0
    R[..., i, i] = c
    R[..., j, j] = c
    R[..., i, j] = -s
    R[..., j, i] = s
    return R


def rot_x(theta: ArrayLike) -> Array:
    """Rotation by ``theta`` (rad, shape ``(...)``) about the x axis -> ``(..., 3, 3)``."""
    return _axis_rot(theta, 0)


def rot_y(theta: ArrayLike) -> Array:
    """Rotation by ``theta`` (rad, shape ``(...)``) about the y axis -> ``(..., 3, 3)``."""
    return _axis_rot(theta, 1)


def rot_z(theta: ArrayLike) -> Array:
    """Rotation by ``theta`` (rad, shape ``(...)``) about the z axis -> ``(..., 3, 3)``."""
    return _axis_rot(theta, 2)


def quat_xyzw_to_matrix(q: ArrayLike, name: str = 'q', atol: float = QUAT_NORM_ATOL) -> Array:
    """Rotation matrices ``(..., 3, 3)`` from ROS quaternions ``(..., 4)`` in order ``(x, y, z, w)``.

    The quaternion must be finite and of unit norm within ``atol`` (it is then renormalised);
    a zero, NaN or far-from-unit quaternion raises :class:`GeometryError`.
    """
    q = check_vectors(q, 4, name)
    n = np.linalg.norm(q, axis=-1)
    if (n < 1e-12).any():
        idx = _first_bad(n < 1e-12)
        raise GeometryError(f'{name}: zero quaternion (x, y, z, w) = {q[idx].tolist()} at batch index {idx}; '
                            'expected a unit quaternion')
    off = np.abs(n - 1.0)
    if (off > atol).any():
        idx = _first_bad(off > atol)
        raise GeometryError(f'{name}: quaternion (x, y, z, w) = {q[idx].tolist()} has norm {n[idx]:.6g} '
                            f'at batch index {idx}; expected a unit quaternion (|norm - 1| <= {atol:g})')
    if q.size == 0:
        return np.zeros(q.shape[:-1] + (3, 3))
    return Rotation.from_quat(q.reshape(-1, 4)).as_matrix().reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat_xyzw(R: ArrayLike, name: str = 'R') -> Array:
    """ROS quaternions ``(..., 4)`` in order ``(x, y, z, w)``, sign fixed to ``w >= 0``, of ``R`` ``(..., 3, 3)``."""
    R = check_rotation(R, name)
    if R.size == 0:
        return np.zeros(R.shape[:-2] + (4,))
    rot, batch = _rot_batch(R)
    return rot.as_quat(canonical=True).reshape(batch + (4,))


def swing_twist(R: ArrayLike, name: str = 'R') -> tuple[Array, Array]:
    """Split ``R = S @ rot_z(tau)``: swing ``S`` ``(..., 3, 3)`` about an axis normal to z, twist ``tau`` (rad).

    ``S e_z = R e_z`` and ``S`` has no twist about z; ``tau`` is in ``(-pi, pi]``. Where the
    twist is undefined (``R e_z = -e_z``, i.e. ``R`` is a half turn about a horizontal axis),
    ``tau = 0`` and ``S = R``.
    """
    R = check_rotation(R, name)
    batch = R.shape[:-2]
    if R.size == 0:
        return np.zeros(batch + (3, 3)), np.zeros(batch)
    q = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat()  # x, y, z, w
    z, w = q[:, 2], q[:, 3]
    n = np.hypot(z, w)
    degenerate = n < 1e-12
    tau = np.where(degenerate, 0.0, 2.0 * np.arctan2(z, np.where(degenerate, 1.0, w)))
    tau = np.where(tau > np.pi, tau - 2 * np.pi, tau)
    tau = np.where(tau <= -np.pi, tau + 2 * np.pi, tau)
    Rz = rot_z(tau)
    S = R.reshape(-1, 3, 3) @ np.swapaxes(Rz, -1, -2)
    return S.reshape(batch + (3, 3)), tau.reshape(batch)
