"""The pose group SO(3) x SO(3) of echoposed (docs/method.md sections 1, 5, 6): pure numpy, no rclpy.

Rotations are float64 arrays ``(..., 3, 3)``; a pose is a pair ``(R_v, R_p)`` (orbit, probe);
rotation vectors are radians; quaternions are ROS order ``(x, y, z, w)``. Modules:

- ``so3``: single rotations (check, SVD projection, angle, exp/log, axis rotations,
  quaternions, swing-twist)
- ``pose``: the group, its exp/log, distance, canonical gauge, control step
- ``effective``: probe frame, effective pose and effective error, body errors
- ``ensemble``: projected mean and sigma^2 of aligned members
- ``twist``: body twist -> Cartesian probe twist

Pose-level functions are exported under their own names; the SO(3) ``exp``/``log`` are
exported as ``so3_exp``/``so3_log`` and the pose ones as ``pose_exp``/``pose_log``.
"""
from __future__ import annotations

from . import effective, ensemble, pose, so3, twist
from .effective import (
                        EffectivePose,
                        EffectiveResidual,
                        ProbeFrame,
                        angle_between,
                        body_errors,
                        effective_error,
                        effective_error_parts,
                        effective_pose,
                        probe_frame,
)
from .ensemble import EnsembleMean, mean_and_sigma2
from .errors import GeometryError
from .pose import Pose, as_pose, compose, distance, gauge_fix, identity, inverse, right_apply, step
from .pose import exp as pose_exp
from .pose import log as pose_log
from .so3 import (
                        angle,
                        check_rotation,
                        check_scalar,
                        check_vectors,
                        hat,
                        matrix_to_quat_xyzw,
                        project_to_so3,
                        quat_xyzw_to_matrix,
                        rot_x,
                        rot_y,
                        rot_z,
                        swing_twist,
                        vee,
)
from .so3 import exp as so3_exp
from .so3 import log as so3_log
from .twist import (
    CartesianTwist,
    body_twist_to_cartesian,
    body_twist_to_probe_cartesian,
    transform_to_twist,
    twist_to_transform,
)

__all__ = [
    'CartesianTwist', 'EffectivePose', 'EffectiveResidual', 'EnsembleMean', 'GeometryError', 'Pose', 'ProbeFrame',
    'angle', 'angle_between', 'as_pose', 'body_errors', 'body_twist_to_cartesian', 'body_twist_to_probe_cartesian',
    'check_rotation', 'check_scalar', 'check_vectors', 'compose', 'distance', 'effective', 'effective_error',
    'effective_error_parts', 'effective_pose', 'ensemble', 'gauge_fix', 'hat', 'identity', 'inverse',
    'matrix_to_quat_xyzw', 'mean_and_sigma2', 'pose', 'pose_exp', 'pose_log', 'probe_frame', 'project_to_so3',
    'quat_xyzw_to_matrix', 'right_apply', 'rot_x', 'rot_y', 'rot_z', 'so3', 'so3_exp', 'so3_log', 'step',
    'swing_twist', 'transform_to_twist', 'twist', 'twist_to_transform', 'vee',
]
