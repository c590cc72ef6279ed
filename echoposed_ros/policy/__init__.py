"""Guidance policy (docs/method.md section 6), pure numpy, no rclpy.

- ``config``: :class:`ControllerConfig`, the frozen, validated parameters
- ``controller``: body-frame errors, proportional twist with deadband and speed limits,
  probe-frame Cartesian twist, and the kinematics of executing it
- ``states``: the guidance state machine (idle, guiding, converged, coasting, hold_uncertain,
  stale_input, stopped), one pure step per control cycle
- ``cues``: the operator cue in sonographer words (slide, rotate, rock, tilt)
- ``targets``: targets from poses, images or per-model standard view tables
"""
from __future__ import annotations

from .config import ControllerConfig, describe_fields, fixed_fields
from .controller import (
                         BodyTwist,
                         TrackingResidual,
                         apply_probe_frame_twist,
                         clip_norm,
                         probe_frame_twist,
                         proportional_twist,
                         tracking_error,
                         ungauged_mean,
)
from .cues import Cue, cue_text, operator_cue, state_cue
from .errors import PolicyError
from .states import ControlOutput, GuidanceMemory, GuidanceState, PoseSample, control_step, pose_sample
from .targets import (
                         STANDARD_VIEWS,
                         Target,
                         TargetKind,
                         ViewTable,
                         load_view_table,
                         make_target,
                         target_from_quaternions,
                         view_name,
                         write_view_table,
)

__all__ = [
                         'STANDARD_VIEWS',
                         'BodyTwist',
                         'ControlOutput',
                         'ControllerConfig',
                         'Cue',
                         'GuidanceMemory',
                         'GuidanceState',
                         'PolicyError',
                         'PoseSample',
                         'Target',
                         'TargetKind',
                         'TrackingResidual',
                         'ViewTable',
                         'apply_probe_frame_twist',
                         'clip_norm',
                         'control_step',
                         'cue_text',
                         'describe_fields',
                         'fixed_fields',
                         'load_view_table',
                         'make_target',
                         'operator_cue',
                         'pose_sample',
                         'probe_frame_twist',
                         'proportional_twist',
                         'state_cue',
                         'target_from_quaternions',
                         'tracking_error',
                         'ungauged_mean',
                         'view_name',
                         'write_view_table',
]
