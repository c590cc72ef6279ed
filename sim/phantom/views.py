"""Standard apical views (A4C, A2C, A3C) of a phantom, computed from its anatomy.

Every view puts the sector apex on the apical window behind the epicardial apex, the central
beam from the apex through the mitral annulus centre (A4C: through the crux, midway between
the mitral and tricuspid centres), and the image plane through:
- A4C: apex, mitral and tricuspid valve centres; RV / tricuspid on the image LEFT (probe -x),
  LV lateral wall on the right (ASE display convention, index mark towards the patient's left);
- A2C: the A4C plane turned -60 degrees about the beam (H frame, see anatomy.py): inferior wall
  on the left, anterior wall on the right, LV and LA only;
- A3C: apex, mitral and aortic valve centres; aorta / LVOT on the image RIGHT, inferolateral
  wall on the left (about 120 degrees from A4C).
Poses are (R_v, R_p) with the apex o = c - r R_v e_z on the orbit sphere and R = R_v R_p, in
canonical gauge (R_v a pure swing: no twist about z).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ..volume import StandardView
from .errors import PhantomError

__all__ = ['pose_from_probe', 'standard_views', 'swing_to']


def swing_to(d: np.ndarray) -> np.ndarray:
    """(3, 3) the rotation about an axis normal to z taking e_z to unit vector d (twist-free)."""
    d = np.asarray(d, np.float64) / np.linalg.norm(d)
    axis = np.cross([0.0, 0.0, 1.0], d)
    s = np.linalg.norm(axis)
    angle = np.arctan2(s, d[2])
    if s < 1e-12:
        if d[2] > 0:
            return np.eye(3)
        return Rotation.from_rotvec([np.pi, 0.0, 0.0]).as_matrix()
    return Rotation.from_rotvec(axis / s * angle).as_matrix()


def pose_from_probe(origin: np.ndarray, rot: np.ndarray, centre: np.ndarray, radius: float
                    ) -> StandardView:
    """Canonical (R_v, R_p) for a probe with apex ``origin`` (on the orbit sphere) and
    orientation ``rot`` (3, 3; columns probe x, y, z in V)."""
    d = np.asarray(centre, np.float64) - np.asarray(origin, np.float64)
    if abs(np.linalg.norm(d) - radius) > 1e-6 * max(radius, 1.0):
        raise PhantomError(f'probe apex {origin} is not on the orbit sphere of radius {radius} about {centre}')
    r_v = swing_to(d)
    return StandardView(orbit=r_v, probe=r_v.T @ rot)


def _plane_view(apex, beam_end, side_point, side_sign, centre, radius) -> StandardView:
    z = beam_end - apex
    z /= np.linalg.norm(z)
    x = side_point - apex
    x = x - np.dot(x, z) * z
    x = side_sign * x / np.linalg.norm(x)
    y = np.cross(z, x)
    a = apex - centre
    az = float(np.dot(a, z))
    disc = az * az - float(np.dot(a, a)) + radius * radius
    if disc < 0:
        raise PhantomError('apical beam line misses the orbit sphere (orbit radius too small)')
    s = az + np.sqrt(disc)
    origin = apex - s * z
    return pose_from_probe(origin, np.stack([x, y, z], axis=1), centre, radius)


def standard_views(anatomy) -> dict[str, StandardView]:
    """{'A4C', 'A2C', 'A3C'}: StandardView poses in the volume frame of ``anatomy``."""
    kp = {k: anatomy.to_volume(v) for k, v in anatomy.key_points().items()}
    c, r = anatomy.centre, anatomy.radius
    crux = 0.5 * (kp['mitral'] + kp['tricuspid'])
    a4c = _plane_view(kp['apex'], crux, kp['tricuspid'], -1.0, c, r)
    a3c = _plane_view(kp['apex'], kp['mitral'], kp['aortic'], +1.0, c, r)
    # A2C: the A4C lateral direction turned -60 degrees about the LV long axis w (from the
    # lateral wall towards the anterior wall), beam through the mitral valve.
    x4 = (a4c.orbit @ a4c.probe)[:, 0]
    turn = Rotation.from_rotvec(np.deg2rad(-60.0) * anatomy.q[:, 2]).as_matrix()
    a2c = _plane_view(kp['apex'], kp['mitral'], kp['apex'] + 10.0 * (turn @ x4), +1.0, c, r)
    return {'A4C': a4c, 'A2C': a2c, 'A3C': a3c}
