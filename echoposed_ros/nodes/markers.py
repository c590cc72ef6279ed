"""RViz markers of the simulated scene (pure builder, no node): the orbit sphere, its centre, the target.

Everything is placed in one frame (the simulator uses ``world``, RViz's fixed frame, so the markers
show without any TF); positions in metres, orientations as quaternions x, y, z, w with w >= 0.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from geometry_msgs.msg import Point
from numpy.typing import ArrayLike
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from .convert import matrix_to_quaternion_msg

__all__ = ['TARGET_ARROW_M', 'scene_markers']

TARGET_ARROW_M = 0.05   # length of the target's beam arrow, m

_ORBIT = ColorRGBA(r=0.3, g=0.6, b=1.0, a=0.15)
_CENTRE = ColorRGBA(r=0.85, g=0.1, b=0.1, a=1.0)
_TARGET = ColorRGBA(r=0.1, g=0.85, b=0.2, a=1.0)


def _point(v: np.ndarray) -> Point:
    x, y, z = (float(c) for c in v)
    return Point(x=x, y=y, z=z)


def _marker(ns: str, kind: int, frame: str, stamp: Any) -> Marker:
    m = Marker()
    m.header.frame_id = frame
    m.header.stamp = stamp
    m.ns, m.id, m.type, m.action = ns, 0, kind, Marker.ADD
    m.pose.orientation.w = 1.0
    return m


def scene_markers(frame: str, stamp: Any, centre_m: ArrayLike, radius_m: float,
                  target: tuple[str, ArrayLike, ArrayLike] | None = None) -> MarkerArray:
    """Markers in ``frame``: ``orbit`` (translucent sphere, radius ``radius_m`` about ``centre_m`` (3,) m),
    ``centre`` (a 6 mm sphere at the centre) and, when ``target = (name, R (3, 3), apex (3,) m)`` is
    given (the target probe frame in ``frame``), ``target`` (an arrow from the apex along the beam, z)
    and ``target_label`` (its name); without a target those two are deleted."""
    centre = np.asarray(centre_m, dtype=np.float64).reshape(3)
    radius = float(radius_m)
    if not (np.all(np.isfinite(centre)) and np.isfinite(radius) and radius > 0):
        raise ValueError(f'orbit: expected a finite centre and a positive radius in m, got {centre}, {radius_m}')
    orbit = _marker('orbit', Marker.SPHERE, frame, stamp)
    orbit.pose.position = _point(centre)
    orbit.scale.x = orbit.scale.y = orbit.scale.z = 2.0 * radius
    orbit.color = _ORBIT
    dot = _marker('centre', Marker.SPHERE, frame, stamp)
    dot.pose.position = _point(centre)
    dot.scale.x = dot.scale.y = dot.scale.z = 0.006
    dot.color = _CENTRE
    arrow = _marker('target', Marker.ARROW, frame, stamp)
    label = _marker('target_label', Marker.TEXT_VIEW_FACING, frame, stamp)
    if target is None:
        arrow.action = label.action = Marker.DELETE
        return MarkerArray(markers=[orbit, dot, arrow, label])
    name, R, apex = target
    R = np.asarray(R, dtype=np.float64).reshape(3, 3)
    apex = np.asarray(apex, dtype=np.float64).reshape(3)
    arrow.points = [_point(apex), _point(apex + TARGET_ARROW_M * R[:, 2])]
    arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.004, 0.008, 0.012   # shaft, head diameter, head length
    arrow.color = _TARGET
    label.pose.position = _point(apex - 0.02 * R[:, 2])
    label.pose.orientation = matrix_to_quaternion_msg(R)
    label.scale.z = 0.015                                                # text height, m
    label.color = _TARGET
    label.text = f'target {name}'
    return MarkerArray(markers=[orbit, dot, arrow, label])
