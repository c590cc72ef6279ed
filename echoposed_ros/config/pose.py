"""The pose node's parameters and their checked, frozen config (no rclpy here).

Offline tools that run the estimator as the live node would (``echoposed bag eval``,
``echoposed eval guidance``) read the same settings with :func:`pose_config_from_yaml`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..paths import config_dir, models_dir
from .errors import ConfigError
from .params import Param, configured_values

__all__ = ['DEFAULT_MODEL', 'NODE_NAME', 'PARAMS', 'PoseNodeConfig', 'pose_config_from_yaml']

NODE_NAME = 'echoposed_pose'

DEFAULT_MODEL = 'echoposed_k5.onnx'

_LIVE = '; may change while running'
_REBUILT = '; may change while running (the estimator is rebuilt on the same model)'

PARAMS = (
    Param('model_path', '', f'ONNX ensemble file; empty = the shipped models/{DEFAULT_MODEL}; may change while '
          'running (an adapted model, docs/adaptation.md): the new file is loaded first and a file that cannot be '
          'used is refused with the reason, the old model going on'),
    Param('input_transport', 'raw', "'raw': sensor_msgs/Image on probe/image; "
          "'compressed': sensor_msgs/CompressedImage on probe/image/compressed (read-only: the node "
          'subscribes to one of them at start-up)', read_only=True),
    Param('intra_op_threads', 2, 'onnxruntime threads inside one operator (read-only: the inference session '
          'is built with it at start-up)', read_only=True),
    Param('fan', 'auto', "how the input's sector fan is found: 'auto' (the model's fan for images of "
          "the model's size, else detected once per image size), 'detect' (every image), 'model'" + _REBUILT),
    Param('input_depth_mm', 0.0, 'mm, depth of the input fan; 0 = scale the input fan onto the '
          "model's depth" + _REBUILT),
    Param('detect_threshold', 0.02, 'intensity in [0, 1] above which a pixel counts as inside the fan' + _REBUILT),
    Param('mirror_tta', True, 'test-time mirroring: each image also runs left-right flipped, 2K members '
          '(twice the inference time; docs/estimator.md)' + _REBUILT),
    Param('frame_id', '', "frame_id of published poses; empty = the model's name" + _LIVE),
    Param('publish_members', True, 'publish the aligned member rotations in EchoPose' + _LIVE),
    Param('diagnostics_period', 1.0, 's, period of the /diagnostics status (read-only: the diagnostics timer is '
          'built with it at start-up)', read_only=True),
    Param('input_timeout', 3.0, 's without any image on the input topic after which /diagnostics warns '
          '(naming the topic and transport)' + _LIVE),
    Param('fusion_window', 1.0, 's, cycle fusion: each published pose fuses the frames of this long (about one '
          "cardiac cycle), carried to the newest by the arm's measured motion on probe/pose "
          '(docs/estimator.md); 0 = every frame alone' + _LIVE),
    Param('orbit_radius', 0.1, 'm, probe apex to heart centre, for carrying fused frames across slides' + _LIVE),
    Param('fusion_max_sigma2', 0.5, 'rad^2, frames less sure than this are not fused (and one such newest '
          'frame is published alone)' + _LIVE),
    Param('arm_pose_tolerance', 0.05, 's, a frame is fused only with an arm pose (probe/pose) stamped within '
          'this of its image; otherwise fusion starts afresh' + _LIVE),
)


@dataclass(frozen=True)
class PoseNodeConfig:
    """The pose node's parameters, checked."""

    model_path: Path
    input_transport: str
    intra_op_threads: int
    fan: str
    input_depth_mm: float | None
    detect_threshold: float
    mirror_tta: bool
    frame_id: str
    publish_members: bool
    diagnostics_period: float
    input_timeout: float = 3.0
    fusion_window: float = 1.0
    orbit_radius: float = 0.1
    fusion_max_sigma2: float = 0.5
    arm_pose_tolerance: float = 0.05

    def fusion_settings(self) -> Any:
        """The :class:`~echoposed_ros.estimator.fusion.FusionSettings` of these parameters."""
        from ..estimator.fusion import FusionSettings  # (not at import: the estimator package loads onnxruntime)
        return FusionSettings(self.fusion_window, self.orbit_radius, self.fusion_max_sigma2, self.arm_pose_tolerance)

    def estimator_kwargs(self) -> dict[str, Any]:
        """The :class:`~echoposed_ros.estimator.Estimator` keywords these settings give (all but
        the model path)."""
        return {'intra_op_threads': self.intra_op_threads, 'fan': self.fan, 'input_depth_mm': self.input_depth_mm,
                'detect_threshold': self.detect_threshold, 'mirror': self.mirror_tta}

    @classmethod
    def from_parameters(cls, v: dict[str, Any]) -> PoseNodeConfig:
        if v['input_transport'] not in ('raw', 'compressed'):
            raise ConfigError(f"input_transport = {v['input_transport']!r}; expected 'raw' or 'compressed'")
        if v['fan'] not in ('auto', 'detect', 'model'):
            raise ConfigError(f"fan = {v['fan']!r}; expected 'auto', 'detect' or 'model'")
        if v['intra_op_threads'] < 1:
            raise ConfigError(f"intra_op_threads = {v['intra_op_threads']}; expected >= 1")
        if not 0 <= v['detect_threshold'] < 1:
            raise ConfigError(f"detect_threshold = {v['detect_threshold']}; expected an intensity in [0, 1)")
        if not (math.isfinite(v['input_depth_mm']) and v['input_depth_mm'] >= 0):
            raise ConfigError(f"input_depth_mm = {v['input_depth_mm']} mm; expected >= 0 (0 = the model's depth)")
        if v['diagnostics_period'] <= 0:
            raise ConfigError(f"diagnostics_period = {v['diagnostics_period']} s; expected > 0")
        if not v['input_timeout'] > 0:
            raise ConfigError(f"input_timeout = {v['input_timeout']} s; expected > 0")
        for key, unit in (('fusion_window', 's'), ('arm_pose_tolerance', 's')):
            if not (math.isfinite(v[key]) and v[key] >= 0):
                raise ConfigError(f'{key} = {v[key]} {unit}; expected a finite time >= 0')
        if not (math.isfinite(v['orbit_radius']) and v['orbit_radius'] > 0):
            raise ConfigError(f"orbit_radius = {v['orbit_radius']} m; expected a positive length")
        if not v['fusion_max_sigma2'] > 0:
            raise ConfigError(f"fusion_max_sigma2 = {v['fusion_max_sigma2']} rad^2; expected > 0")
        model = Path(v['model_path']) if v['model_path'] else models_dir() / DEFAULT_MODEL
        return cls(model_path=model, input_transport=v['input_transport'],
                   intra_op_threads=int(v['intra_op_threads']), fan=v['fan'],
                   input_depth_mm=float(v['input_depth_mm']) or None,
                   detect_threshold=float(v['detect_threshold']), mirror_tta=bool(v['mirror_tta']),
                   frame_id=v['frame_id'],
                   publish_members=bool(v['publish_members']),
                   diagnostics_period=float(v['diagnostics_period']),
                   input_timeout=float(v['input_timeout']), fusion_window=float(v['fusion_window']),
                   orbit_radius=float(v['orbit_radius']), fusion_max_sigma2=float(v['fusion_max_sigma2']),
                   arm_pose_tolerance=float(v['arm_pose_tolerance']))


def pose_config_from_yaml(path: str | Path | None = None) -> PoseNodeConfig:
    """The config the pose node runs with when launched with ``path`` (default the package's
    ``config/pose.yaml``): defaults overlaid by the file, checked; ConfigError names a bad key."""
    path = config_dir() / 'pose.yaml' if path is None else Path(path)
    return PoseNodeConfig.from_parameters(configured_values(PARAMS, path, NODE_NAME))
