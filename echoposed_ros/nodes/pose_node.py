"""Pose node ``echoposed_pose``: ultrasound images -> probe pose on SO(3) x SO(3) with sigma^2.

Subscribes ``probe/image`` (``sensor_msgs/Image``) or ``probe/image/compressed``
(``sensor_msgs/CompressedImage``), sensor-data QoS with depth 1: a slow estimator drops stale
frames instead of queueing them. Publishes ``echoposed/pose`` (``EchoPose``, stamp copied from
the image) and ``/diagnostics`` (rate, latency, sigma^2, rejected inputs). Serves
``echoposed/estimate`` (``EstimatePose``): estimate one given image (used to set targets).

Cycle fusion (``fusion_window`` > 0, :mod:`echoposed_ros.estimator.fusion`): the node also subscribes
``probe/pose`` (``geometry_msgs/PoseStamped``, the probe's pose as the arm measures it: orientation = probe
axes, position = apex in m, any fixed frame) and publishes, for each image, the fusion of the confident frames
of the last ``fusion_window`` s carried to this image's pose by the arm's motion; ``uncertainty`` stays the
newest frame's own sigma^2 and the members are the fused members. A frame with no arm pose stamped within
``arm_pose_tolerance`` of it is published alone, fusion starts afresh and ``/diagnostics`` warns.

A malformed image (wrong size, step or length, unknown encoding, more than
``estimator.MAX_PIXELS`` pixels, a compressed stream that does not decode, a blank frame) is
rejected, counted and reported with its reason on ``/diagnostics`` and in the log; the node keeps
running. No image on the input topic for ``input_timeout`` s is a WARN on ``/diagnostics`` naming
the topic and the transport. A model file that cannot be used stops the node with one clear line
(exit code 2) at start-up; set later (``model_path``, e.g. an adapted model), it is loaded before it
replaces the running one, and refused with the reason when it cannot be used.
"""
from __future__ import annotations

import sys
import time
from typing import Any

import rclpy
from echoposed_msgs.msg import EchoPose
from echoposed_msgs.srv import EstimatePose
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from ..config.pose import NODE_NAME, PARAMS, PoseNodeConfig
from ..estimator import Estimate, Estimator, EstimatorError
from ..estimator.fusion import ArmPose, ArmPoseHistory, CycleFusion, FusedEstimate
from .convert import compressed_msg_to_array, echopose_msg, image_msg_to_array, pose_stamped_to_arrays, stamp_ns
from .diagnostics import OK, WARN, DiagnosticsPublisher
from .params import declare_all, watch_parameters
from .process import run_node
from .qos import NEWEST_FRAME

__all__ = ['PARAMS', 'PoseNode', 'PoseNodeConfig', 'main']

class PoseNode(Node):
    """Thin shell: parameters -> :class:`PoseNodeConfig` -> :class:`Estimator` -> ``EchoPose``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.config = PoseNodeConfig.from_parameters(declare_all(self, PARAMS))
        self.estimator = Estimator(self.config.model_path, **self.config.estimator_kwargs())
        self.frame_id = self._frame_id(self.config)
        self.pose_pub = self.create_publisher(EchoPose, 'echoposed/pose', 10)
        if self.config.input_transport == 'raw':
            self._input = self.create_subscription(Image, 'probe/image', self._on_image, NEWEST_FRAME)
        else:
            self._input = self.create_subscription(CompressedImage, 'probe/image/compressed', self._on_compressed,
                                                   NEWEST_FRAME)
        self.create_service(EstimatePose, 'echoposed/estimate', self._on_estimate)
        # the arm's measured probe poses by stamp (ns), for cycle fusion; about 2 s at 100 Hz
        self._arm = ArmPoseHistory(capacity=256)
        self.create_subscription(PoseStamped, 'probe/pose', self._on_arm_pose, 50)
        self.fusion = self._fusion(self.config)
        self._fused_frames = 0
        self._unfused = 0            # frames published alone for want of an arm pose, since the last report
        self.diagnostics = DiagnosticsPublisher(self, 'echoposed_pose: estimator', str(self.config.model_path))
        self.create_timer(self.config.diagnostics_period, self._publish_diagnostics)
        # Counters for /diagnostics since the last report (and in total for rejections).
        self._window_start = time.monotonic()
        self._count = 0
        self._latency_sum = 0.0
        self._inference_sum = 0.0
        self._last_sigma2 = float('nan')
        self.received = 0        # images taken from the input topic, valid or not
        self.estimated = 0       # of which estimated and published
        self._last_input = time.monotonic()   # the node's start counts as the last input
        self.rejected = 0
        self._rejected_in_window = 0
        self._last_rejection = ''
        self._pending: tuple[PoseNodeConfig, Estimator] | None = None   # checked, not yet applied
        watch_parameters(self, PARAMS, self._check_config, self._set_config)
        self.get_logger().info(f'model {self.config.model_path} ({self.estimator.members} members, input '
                               f'{self.estimator.input_shape[0]}x{self.estimator.input_shape[1]})')

    def _fusion(self, config: PoseNodeConfig) -> CycleFusion:
        """A fresh cycle fusion; warns once when it is on and the model's frame is not pinned (an unpinned
        frame turns the probe's own axes, which the arm's motion cannot carry: docs/estimator.md)."""
        if config.fusion_window > 0 and self.model_frame == 'unpinned':
            self.get_logger().warning(f'cycle fusion with an unpinned model ({self.estimator.path.name}): slides '
                                      'are carried in the wrong axes; export it pinned or set fusion_window 0')
        return config.fusion_settings().fusion()

    @property
    def model_frame(self) -> str:
        """'pinned', 'unpinned' or 'unknown': the model's metadata ``frame`` (docs/estimator.md)."""
        frame = self.estimator.model.info.metadata.get('frame')
        if not isinstance(frame, dict) or 'pinned' not in frame:
            return 'unknown'
        return 'pinned' if frame['pinned'] else 'unpinned'

    def _frame_id(self, config: PoseNodeConfig) -> str:
        return config.frame_id or str(self.estimator.model.info.metadata.get('model_name', 'echoposed'))

    def _rebuilds(self, config: PoseNodeConfig) -> bool:
        return (config.model_path != self.config.model_path
                or config.estimator_kwargs() != self.config.estimator_kwargs())

    def _check_config(self, values: dict[str, Any]) -> PoseNodeConfig:
        """A requested change, checked whole; one that needs a new estimator builds it here, so a model
        that cannot be loaded refuses the request (EstimatorError) and the running one goes on."""
        config = PoseNodeConfig.from_parameters(values)
        if self._rebuilds(config) and (self._pending is None or self._pending[0] != config):
            self._pending = (config, Estimator(config.model_path, **config.estimator_kwargs()))
        return config

    def _set_config(self, config: PoseNodeConfig) -> None:
        """Parameters changed while running (only the writable ones can); a new model or a change of
        how images are read (fan, depth, threshold, mirroring) swaps in the estimator built when the
        request was checked, so the next image is estimated with it (callbacks run one at a time)."""
        if self._rebuilds(config):
            pending = self._pending if self._pending is not None and self._pending[0] == config else None
            self.estimator = pending[1] if pending else Estimator(config.model_path, **config.estimator_kwargs())
            self._pending = None
            self.get_logger().info(f'estimator rebuilt: model {config.model_path}, mirror_tta {config.mirror_tta}, '
                                   f'fan {config.fan}, detect_threshold {config.detect_threshold:g}')
            self.diagnostics.hardware_id = str(config.model_path)
        self.config = config
        self.fusion = self._fusion(config)   # a new model's members are in another frame; new settings start afresh
        self.frame_id = self._frame_id(config)

    # -- inputs ----------------------------------------------------------------------------------

    def _on_image(self, msg: Image) -> None:
        self._handle(msg.header, lambda: image_msg_to_array(msg, 'probe/image'))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._handle(msg.header, lambda: compressed_msg_to_array(msg, 'probe/image/compressed'))

    def _on_arm_pose(self, msg: PoseStamped) -> None:
        try:
            R, apex = pose_stamped_to_arrays(msg, 'probe/pose')
        except ValueError as exc:   # a bad arm pose is dropped: frames near it are then published alone
            self.get_logger().warning(f'probe/pose dropped: {exc}', throttle_duration_sec=1.0)
            return
        self._arm.add(stamp_ns(msg.header), ArmPose(R, apex))

    def _fuse(self, header: Any, estimate: Estimate) -> Estimate | FusedEstimate:
        if self.config.fusion_window <= 0:
            return estimate
        stamp = stamp_ns(header)
        arm = self._arm.at(stamp, self.config.arm_pose_tolerance)
        if arm is None:
            self._unfused += 1
        fused = self.fusion.add(stamp * 1e-9, estimate.member_orbits, estimate.member_probes, estimate.sigma2, arm)
        self._fused_frames = fused.frames
        return fused

    def _handle(self, header: Any, decode: Any) -> None:
        self.received += 1
        self._last_input = time.monotonic()
        try:
            array, encoding = decode()
            estimate = self.estimator.estimate(array, encoding)
            published = self._fuse(header, estimate)
        except Exception as exc:   # an input must never end the node: it is rejected
            self._reject(_reason(exc))
            return
        self.estimated += 1
        self.pose_pub.publish(self._to_msg(header, published, estimate.inference_s))
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

    def _to_msg(self, header: Any, e: Estimate | FusedEstimate, inference_s: float) -> EchoPose:
        header.frame_id = self.frame_id
        members = (e.member_orbits, e.member_probes) if self.config.publish_members else (None, None)
        return echopose_msg(header, e.orbit, e.probe, e.sigma2, *members, inference_s=inference_s)

    def _on_estimate(self, request: EstimatePose.Request, response: EstimatePose.Response) -> EstimatePose.Response:
        try:
            array, encoding = image_msg_to_array(request.image, 'EstimatePose.image')
            estimate = self.estimator.estimate(array, encoding)
        except Exception as exc:   # a bad request image is refused; the node goes on
            why = _reason(exc)
            self._reject(why)
            response.success, response.message = False, why
            return response
        response.success, response.message = True, f'sigma2 = {estimate.sigma2:.4g} rad^2'
        response.pose = self._to_msg(request.image.header, estimate, estimate.inference_s)
        return response

    # -- diagnostics -----------------------------------------------------------------------------

    @property
    def input_topic(self) -> str:
        """The input topic's full name (namespace and remapping applied)."""
        return self._input.topic_name

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        elapsed = max(now - self._window_start, 1e-9)
        silent = now - self._last_input
        n = self._count
        values = {
            'rate_hz': n / elapsed,
            'latency_ms': 1e3 * self._latency_sum / n if n else float('nan'),
            'inference_ms': 1e3 * self._inference_sum / n if n else float('nan'),
            'sigma2_rad2': self._last_sigma2,
            'rejected_inputs': self.rejected,
            'last_rejection': self._last_rejection,
            'model': str(self.config.model_path),
            'input_topic': self.input_topic,
            'input_transport': self.config.input_transport,
            'received_inputs': self.received,
            'seconds_since_input': silent,
            'fusion_window_s': self.config.fusion_window,
            'model_frame': self.model_frame,
            'fused_frames': self._fused_frames,
            'unfused_for_want_of_arm_pose': self._unfused,
        }
        if self._rejected_in_window:
            level, message = WARN, f'{self._rejected_in_window} input(s) rejected: {self._last_rejection}'
        elif self._unfused:
            level = WARN
            message = (f'cycle fusion: {self._unfused} frame(s) published alone, no arm pose on probe/pose within '
                       f'{self.config.arm_pose_tolerance:g} s of their stamp (set fusion_window 0 without an arm)')
        elif silent >= self.config.input_timeout:
            level = WARN
            message = (f'no image for {silent:.1f} s on {self.input_topic} ({self.config.input_transport} '
                       f'transport){"" if self.received else "; none since the start"}')
        elif n == 0:
            level, message = OK, f'waiting for images on {self.input_topic} ({self.config.input_transport} transport)'
        else:
            level, message = OK, f'{n / elapsed:.1f} Hz'
        self.diagnostics.publish(level, message, values)
        self._window_start = time.monotonic()
        self._count = 0
        self._latency_sum = self._inference_sum = 0.0
        self._rejected_in_window = 0
        self._unfused = 0


def _reason(exc: Exception) -> str:
    """Why an input was rejected: the message of an input error, else the exception's type too."""
    return str(exc) if isinstance(exc, (EstimatorError, ValueError)) else f'unexpected {type(exc).__name__}: {exc}'


def main(args: list[str] | None = None) -> int:
    return run_node(PoseNode, NODE_NAME, args)


if __name__ == '__main__':
    sys.exit(main())
