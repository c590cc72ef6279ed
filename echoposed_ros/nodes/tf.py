"""TF for RViz: the simulator's frames as ``geometry_msgs/TransformStamped`` (pure builders, no node).

Frames (all translations in metres, rotations as quaternions x, y, z, w with w >= 0):

- ``world``: the simulator's scene frame W (z up); RViz's fixed frame.
- ``heart``: the volume frame V (docs/method.md section 1) in metres, child of ``world``; the frame of
  ``probe/pose`` and ``probe/true_pose``.
- the robot description's links (``lbr_iiwa_link_0`` ... ``probe_tip``), each a child of ``world``.
- ``probe``: the image's frame (sector apex, z = beam, x = lateral), child of the tip link, identity.
- ``probe_true``: the true probe frame (the apex of ``probe/pose``), child of ``heart``. In the
  simulator it coincides with ``probe``; on a real robot only ``probe`` exists.

``/tf`` is ``tf2_msgs/TFMessage``: a ROS 2 install has it (RViz needs it); the pip wheels do not,
and there :func:`tf_message_type` is None.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from geometry_msgs.msg import TransformStamped
from numpy.typing import ArrayLike

from ..geometry import matrix_to_quat_xyzw

__all__ = ['HEART', 'PROBE', 'PROBE_TRUE', 'WORLD', 'link_transforms', 'sim_transforms', 'tf_message_type',
           'transform_msg']

WORLD, HEART, PROBE, PROBE_TRUE = 'world', 'heart', 'probe', 'probe_true'
MM_PER_M = 1000.0


def _transform(parent: str, child: str, q_xyzw: np.ndarray, t_m: np.ndarray, stamp: Any) -> TransformStamped:
    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = parent
    msg.child_frame_id = child
    tr, rot = msg.transform.translation, msg.transform.rotation
    tr.x, tr.y, tr.z = (float(c) for c in t_m)
    rot.x, rot.y, rot.z, rot.w = (float(c) for c in q_xyzw)
    return msg


def _transforms(frames: list[tuple[str, str, ArrayLike, ArrayLike]], stamp: Any) -> list[TransformStamped]:
    """``[(parent, child, R (3, 3), t (3,) m)]`` -> messages; the quaternions in one batch (the
    per-rotation conversion costs ~0.1 ms, a tick's TF holds ~15)."""
    if not frames:
        return []
    R = np.stack([np.asarray(f[2], dtype=np.float64).reshape(3, 3) for f in frames])
    t = np.stack([np.asarray(f[3], dtype=np.float64).reshape(3) for f in frames])
    q = matrix_to_quat_xyzw(R, 'transform rotation')
    return [_transform(parent, child, q[i], t[i], stamp) for i, (parent, child, _, _) in enumerate(frames)]


def transform_msg(parent: str, child: str, R: ArrayLike, t_m: ArrayLike, stamp: Any) -> TransformStamped:
    """``child``'s frame in ``parent``'s: rotation (3, 3) (columns = child's axes in parent) and origin (3,) m."""
    return _transforms([(parent, child, R, t_m)], stamp)[0]


def link_transforms(link_poses: Mapping[str, tuple[ArrayLike, ArrayLike]], stamp: Any,
                    parent: str = WORLD) -> list[TransformStamped]:
    """``parent -> link`` for each ``{link: (R (3, 3), p (3,) m)}`` (link frames in ``parent``)."""
    return _transforms([(parent, name, R, p) for name, (R, p) in link_poses.items()], stamp)


def sim_transforms(R_WV: ArrayLike, t_WV_m: ArrayLike, link_poses: Mapping[str, tuple[ArrayLike, ArrayLike]],
                   tip_link: str, R_probe: ArrayLike, apex_mm: ArrayLike, stamp: Any) -> list[TransformStamped]:
    """Every transform of one simulator tick.

    R_WV (3, 3), t_WV_m (3,) m: V in W (``world -> heart``). link_poses: the robot's links in W
    (``world -> link``). tip_link: the link whose frame is the sector apex (``tip_link -> probe``,
    identity). R_probe (3, 3), apex_mm (3,) mm: the true probe frame in V (``heart -> probe_true``).
    """
    if tip_link not in link_poses:
        raise ValueError(f'tip_link {tip_link!r} is not among the links {sorted(link_poses)}')
    apex_m = np.asarray(apex_mm, dtype=np.float64) / MM_PER_M
    return _transforms([(WORLD, HEART, R_WV, t_WV_m),
                        *((WORLD, name, R, p) for name, (R, p) in link_poses.items()),
                        (tip_link, PROBE, np.eye(3), np.zeros(3)),
                        (HEART, PROBE_TRUE, R_probe, apex_m)], stamp)


def tf_message_type() -> type | None:
    """``tf2_msgs.msg.TFMessage`` where installed (every ROS 2 install), else None (the pip wheels)."""
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        return None
    return TFMessage
