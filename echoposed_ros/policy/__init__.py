"""Guidance policy (docs/method.md section 6), pure numpy, no rclpy.

- ``config``: :class:`ControllerConfig`, the frozen, validated parameters
- ``controller``: body-frame errors, proportional twist with deadband and speed limits,
  probe-frame Cartesian twist, and the kinematics of executing it
- ``states``: the guidance state machine (idle, guiding, converged, coasting, hold_uncertain,
  stale_input, stopped, fine_aligning, mismatch), one pure step per control cycle
- ``coasting``: odometry from the last trusted estimate through unsure views
- ``recovery``: back along the path, exploration, lost (long unsure spells)
- ``similarity``: the view match of a live frame to a target image or cine (NCC)
- ``fine``: the fine stage's search by probe motions on the view match
- ``cues``: the operator cue in sonographer words (slide, rotate, rock, tilt)
- ``targets``: targets from poses, images or per-model standard view tables
- ``readings``: the ways an ensemble reads an ambiguous target image (groups of its members)
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
from .fine import AXES, FineMemory, FineSettings, ViewSample, fine_start, fine_step
from .readings import Reading, target_readings
from .similarity import ViewMatch, ViewMatcher, ncc
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
                         'AXES',
                         'STANDARD_VIEWS',
                         'BodyTwist',
                         'ControlOutput',
                         'ControllerConfig',
                         'Cue',
                         'FineMemory',
                         'FineSettings',
                         'GuidanceMemory',
                         'GuidanceState',
                         'PolicyError',
                         'PoseSample',
                         'Reading',
                         'Target',
                         'TargetKind',
                         'TrackingResidual',
                         'ViewMatch',
                         'ViewMatcher',
                         'ViewSample',
                         'ViewTable',
                         'apply_probe_frame_twist',
                         'clip_norm',
                         'control_step',
                         'cue_text',
                         'describe_fields',
                         'fine_start',
                         'fine_step',
                         'fixed_fields',
                         'load_view_table',
                         'make_target',
                         'ncc',
                         'operator_cue',
                         'pose_sample',
                         'probe_frame_twist',
                         'proportional_twist',
                         'state_cue',
                         'target_from_quaternions',
                         'target_readings',
                         'tracking_error',
                         'ungauged_mean',
                         'view_name',
                         'write_view_table',
]
