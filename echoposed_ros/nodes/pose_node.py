"""Pose node ``echoposed_pose``: ultrasound images -> probe pose on SO(3) x SO(3) with sigma^2.

Subscribes ``probe/image`` (``sensor_msgs/Image``) or ``probe/image/compressed``
(``sensor_msgs/CompressedImage``), sensor-data QoS with depth 1: a slow estimator drops stale
frames instead of queueing them. Publishes ``echoposed/pose`` (``EchoPose``, stamp copied from
the image) and ``/diagnostics`` (rate, latency, sigma^2, rejected inputs). Serves
``echoposed/estimate`` (``EstimatePose``): estimate one given image (used to set targets).

A malformed image is rejected with a warning on ``/diagnostics`` and in the log; the node keeps
running. A model file that cannot be used stops the node with one clear line (exit code 2).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rclpy
from echoposed_msgs.msg import EchoPose
from echoposed_msgs.srv import EstimatePose
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from ..estimator import Estimate, Estimator, EstimatorError
from ..paths import models_dir
from .convert import compressed_msg_to_array, echopose_msg, image_msg_to_array
from .diagnostics import OK, WARN, DiagnosticsPublisher
from .params import Param, declare_all
from .process import run_node

__all__ = ['PARAMS', 'PoseNode', 'PoseNodeConfig', 'main']

DEFAULT_MODEL = 'echoposed_k5.onnx'

PARAMS = (
    Param('model_path', '', f'ONNX ensemble file; empty = the shipped models/{DEFAULT_MODEL}', read_only=True),
    Param('input_transport', 'raw', "'raw': sensor_msgs/Image on probe/image; "
          "'compressed': sensor_msgs/CompressedImage on probe/image/compressed", read_only=True),
    Param('intra_op_threads', 2, 'onnxruntime threads inside one operator', read_only=True),
    Param('fan', 'auto', "how the input's sector fan is found: 'auto' (the model's fan for images of "
          "the model's size, else detected once per image size), 'detect' (every image), 'model'",
          read_only=True),
    Param('input_depth_mm', 0.0, 'mm, depth of the input fan; 0 = scale the input fan onto the '
          "model's depth", read_only=True),
    Param('detect_threshold', 0.02, 'intensity in [0, 1] above which a pixel counts as inside the fan',
          read_only=True),
    Param('mirror_tta', True, 'test-time mirroring: each image also runs left-right flipped, 2K members '
          '(twice the inference time; docs/estimator.md)', read_only=True),
    Param('frame_id', '', "frame_id of published poses; empty = the model's name"),
    Param('publish_members', True, 'publish the aligned member rotations in EchoPose'),
    Param('diagnostics_period', 1.0, 's, period of the /diagnostics status'),
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

    @classmethod
    def from_parameters(cls, v: dict[str, Any]) -> PoseNodeConfig:
        if v['input_transport'] not in ('raw', 'compressed'):
            raise ValueError(f"input_transport = {v['input_transport']!r}; expected 'raw' or 'compressed'")
        if v['fan'] not in ('auto', 'detect', 'model'):
            raise ValueError(f"fan = {v['fan']!r}; expected 'auto', 'detect' or 'model'")
        if v['intra_op_threads'] < 1:
            raise ValueError(f"intra_op_threads = {v['intra_op_threads']}; expected >= 1")
        if v['diagnostics_period'] <= 0:
            raise ValueError(f"diagnostics_period = {v['diagnostics_period']} s; expected > 0")
        model = Path(v['model_path']) if v['model_path'] else models_dir() / DEFAULT_MODEL
        return cls(model_path=model, input_transport=v['input_transport'],
                   intra_op_threads=int(v['intra_op_threads']), fan=v['fan'],
                   input_depth_mm=float(v['input_depth_mm']) or None,
                   detect_threshold=float(v['detect_threshold']), mirror_tta=bool(v['mirror_tta']),
                   frame_id=v['frame_id'],
                   publish_members=bool(v['publish_members']),
                   diagnostics_period=float(v['diagnostics_period']))


class PoseNode(Node):
    """Thin shell: parameters -> :class:`PoseNodeConfig` -> :class:`Estimator` -> ``EchoPose``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('echoposed_pose', **kwargs)
        self.config = PoseNodeConfig.from_parameters(declare_all(self, PARAMS))
        self.estimator = Estimator(self.config.model_path, intra_op_threads=self.config.intra_op_threads,
                                   fan=self.config.fan, input_depth_mm=self.config.input_depth_mm,
                                   detect_threshold=self.config.detect_threshold,
                                   mirror=self.config.mirror_tta)
        self.frame_id = self.config.frame_id or str(self.estimator.model.info.metadata.get('model_name', 'echoposed'))
        self.pose_pub = self.create_publisher(EchoPose, 'echoposed/pose', 10)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                         reliability=qos_profile_sensor_data.reliability,
                         durability=qos_profile_sensor_data.durability)
        if self.config.input_transport == 'raw':
            self.create_subscription(Image, 'probe/image', self._on_image, qos)
        else:
            self.create_subscription(CompressedImage, 'probe/image/compressed', self._on_compressed, qos)
        self.create_service(EstimatePose, 'echoposed/estimate', self._on_estimate)
        self.diagnostics = DiagnosticsPublisher(self, 'echoposed_pose: estimator', str(self.config.model_path))
        self.create_timer(self.config.diagnostics_period, self._publish_diagnostics)
        # Counters for /diagnostics since the last report (and in total for rejections).
        self._window_start = time.monotonic()
        self._count = 0
        self._latency_sum = 0.0
        self._inference_sum = 0.0
        self._last_sigma2 = float('nan')
        self.rejected = 0
        self._rejected_in_window = 0
        self._last_rejection = ''
        self.get_logger().info(f'model {self.config.model_path} ({self.estimator.members} members, input '
                               f'{self.estimator.input_shape[0]}x{self.estimator.input_shape[1]})')

    # -- inputs ----------------------------------------------------------------------------------

    def _on_image(self, msg: Image) -> None:
        self._handle(msg.header, lambda: image_msg_to_array(msg, 'probe/image'))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._handle(msg.header, lambda: compressed_msg_to_array(msg, 'probe/image/compressed'))

    def _handle(self, header: Any, decode: Any) -> None:
        try:
            array, encoding = decode()
            estimate = self.estimator.estimate(array, encoding)
        except (EstimatorError, ValueError) as exc:
            self._reject(str(exc))
            return
        self.pose_pub.publish(self._to_msg(header, estimate))
        now = self.get_clock().now()
        latency = (now - rclpy.time.Time.from_msg(header.stamp, clock_type=now.clock_type)).nanoseconds * 1e-9
        self._count += 1
        self._latency_sum += latency
        self._inference_sum += estimate.inference_s
        self._last_sigma2 = estimate.sigma2

    def _reject(self, why: str) -> None:
        self.rejected += 1
        self._rejected_in_window += 1
        self._last_rejection = why
        self.get_logger().warning(f'rejected input: {why}', throttle_duration_sec=1.0)

    def _to_msg(self, header: Any, e: Estimate) -> EchoPose:
        header.frame_id = self.frame_id
        members = (e.member_orbits, e.member_probes) if self.config.publish_members else (None, None)
        return echopose_msg(header, e.orbit, e.probe, e.sigma2, *members, inference_s=e.inference_s)

    def _on_estimate(self, request: EstimatePose.Request, response: EstimatePose.Response) -> EstimatePose.Response:
        try:
            array, encoding = image_msg_to_array(request.image, 'EstimatePose.image')
            estimate = self.estimator.estimate(array, encoding)
        except (EstimatorError, ValueError) as exc:
            self._reject(str(exc))
            response.success, response.message = False, str(exc)
            return response
        response.success, response.message = True, f'sigma2 = {estimate.sigma2:.4g} rad^2'
        response.pose = self._to_msg(request.image.header, estimate)
        return response

    # -- diagnostics -----------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        elapsed = max(time.monotonic() - self._window_start, 1e-9)
        n = self._count
        values = {
            'rate_hz': n / elapsed,
            'latency_ms': 1e3 * self._latency_sum / n if n else float('nan'),
            'inference_ms': 1e3 * self._inference_sum / n if n else float('nan'),
            'sigma2_rad2': self._last_sigma2,
            'rejected_inputs': self.rejected,
            'last_rejection': self._last_rejection,
            'model': str(self.config.model_path),
        }
        if self._rejected_in_window:
            level, message = WARN, f'{self._rejected_in_window} input(s) rejected: {self._last_rejection}'
        elif n == 0:
            level, message = WARN, 'no images received'
        else:
            level, message = OK, f'{n / elapsed:.1f} Hz'
        self.diagnostics.publish(level, message, values)
        self._window_start = time.monotonic()
        self._count = 0
        self._latency_sum = self._inference_sum = 0.0
        self._rejected_in_window = 0


def main(args: list[str] | None = None) -> int:
    return run_node(PoseNode, 'echoposed_pose', args)


if __name__ == '__main__':
    sys.exit(main())
