"""Operator cue: the motion from the current to the target view in sonographer words.

Probe axes (docs/method.md section 1): z = central beam (into the body), x = lateral, in the image plane,
towards the orientation marker (the image's right-hand columns), y = elevation, normal to
the image plane. The motion is split the way a sonographer makes it:

- **slide**: move the probe over the chest (the orbit factor): the apex is carried along the
  great circle of the orbit sphere from ``u`` to ``u_T`` without turning (parallel
  transport). Size: the orbit angle between ``u`` and ``u_T``; direction: where the apex
  goes, in the probe's x-y plane: "toward the marker" (+x), "away from the marker" (-x),
  "up" (+y), "down" (-y), or a diagonal such as "toward the marker and up".
- then the rotation left over, in the probe frame, ``log((S R)^T R_T)`` with ``S`` the slide:

  - **rotate** about the beam z: positive is *clockwise* as seen from the handle, looking
    along the beam into the patient (right-hand rule about +z).
  - **rock** about the elevation axis y: the beam swings within the image plane (in-plane),
    "toward the marker" (+x, positive angle) or "away from the marker".
  - **tilt** (fanning) about the lateral axis x: the beam sweeps out of the image plane
    (elevation), "up" (towards +y, negative angle about x) or "down" (towards -y).

Everything is computed from the effective poses ``u = R_v e_z`` and ``R = R_v R_p`` in the
probe frame, so the cue does not depend on the gauge nor on a rotation of the estimates' world
frame. Angles are radians in :class:`Cue`, whole degrees in the text.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from echoposed_ros.geometry import as_pose, so3_exp, so3_log

__all__ = ['Cue', 'cue_text', 'operator_cue', 'state_cue']

_EZ = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class Cue:
    """One cue. slide: rad (>= 0); slide_direction: (x, y) unit vector of the apex motion in the probe
    frame (zeros when there is no slide); rotate, rock, tilt: signed rad about probe z, y, x
    (rotate > 0 clockwise seen from the handle; rock > 0 toward the marker; tilt > 0 beam down, -y)."""

    slide: float
    slide_direction: tuple[float, float]
    rotate: float
    rock: float
    tilt: float


def operator_cue(current: Sequence[ArrayLike], target: Sequence[ArrayLike]) -> Cue:
    """Cue from the current estimate ``(R_v, R_p)`` to the target (both (3, 3) rotations, one frame)."""
    P, T = as_pose(current, 'current'), as_pose(target, 'target')
    u, u_T = P.orbit[:, 2], T.orbit[:, 2]
    R, R_T = P.orbit @ P.probe, T.orbit @ T.probe
    axis = np.cross(u, u_T)
    s, c = float(np.linalg.norm(axis)), float(u @ u_T)
    slide = math.atan2(s, c)
    if s > 1e-12:
        S = so3_exp(axis / s * slide)
        tangent = (u_T - c * u) / np.linalg.norm(u_T - c * u)
        d = -(R.T @ tangent)[:2]        # the apex o = c - r u moves against u's motion
        n = float(np.linalg.norm(d))
        direction = (float(d[0] / n), float(d[1] / n)) if n > 1e-9 else (0.0, 0.0)
    else:
        S, direction = np.eye(3), (0.0, 0.0)
        if c < 0:  # antipodal: any great circle; take the one through the probe's +x (else +y) side
            a = np.cross(u, R[:, 0])
            if np.linalg.norm(a) < 1e-9:
                a = np.cross(u, R[:, 1])
            # u starts toward the probe's +x side, so the apex slides away from the marker.
            slide, S, direction = math.pi, so3_exp(a / np.linalg.norm(a) * math.pi), (-1.0, 0.0)
    w = so3_log((S @ R).T @ R_T)
    return Cue(slide=float(slide), slide_direction=direction, rotate=float(w[2]), rock=float(w[1]),
               tilt=float(w[0]))


def _slide_words(direction: tuple[float, float]) -> str:
    x, y = direction
    parts = []
    # 8 sectors of 45 degrees: a component counts when it is at least sin(22.5 deg) of the whole.
    if abs(x) >= 0.3827:
        parts.append('toward the marker' if x > 0 else 'away from the marker')
    if abs(y) >= 0.3827:
        parts.append('up' if y > 0 else 'down')
    return ' and '.join(parts)


def cue_text(cue: Cue, min_angle: float = math.radians(1.0)) -> str:
    """The cue as a sentence, e.g. ``"slide toward the marker 7 deg; rotate clockwise 20 deg; tilt up 5 deg"``.

    Order: slide, rotate, rock, tilt; parts smaller than ``min_angle`` (rad) are left out; when all
    are, ``"hold still"``.
    """
    parts = []
    if cue.slide >= min_angle:
        parts.append(f'slide {_slide_words(cue.slide_direction)} {math.degrees(cue.slide):.0f} deg')
    if abs(cue.rotate) >= min_angle:
        parts.append(f'rotate {"clockwise" if cue.rotate > 0 else "counterclockwise"} '
                     f'{math.degrees(abs(cue.rotate)):.0f} deg')
    if abs(cue.rock) >= min_angle:
        parts.append(f'rock {"toward" if cue.rock > 0 else "away from"} the marker '
                     f'{math.degrees(abs(cue.rock)):.0f} deg')
    if abs(cue.tilt) >= min_angle:
        parts.append(f'tilt {"down" if cue.tilt > 0 else "up"} {math.degrees(abs(cue.tilt)):.0f} deg')
    return '; '.join(parts) if parts else 'hold still'


def state_cue(state_name: str, detail: str = '') -> str:
    """Cue for the states other than guiding (they hold the probe, or coast on the last motion)."""
    base = {
        'idle': 'no target: set a target view',
        'converged': 'hold still: target view reached',
        'hold_uncertain': 'hold still: estimate uncertain (no heart in view or not sure)',
        'coasting': 'keep the last motion briefly: estimate uncertain',
        'stale_input': 'hold still: no images',
        'stopped': 'guidance stopped',
        'recovering': 'back to the last view the estimate was sure of',
        'exploring': 'turning the probe about its beam to find the heart',
        'lost': 'hold still: heart lost: reposition the probe',
        'fine_aligning': 'small probe motions: matching the target image',
        'mismatch': 'hold still: the estimate says on target but the image does not match the target view; '
                    'reposition or set another target',
    }.get(state_name, state_name)
    return f'{base} ({detail})' if detail else base
