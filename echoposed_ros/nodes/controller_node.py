"""Controller node ``echoposed_controller``: pose estimates -> probe velocity commands (docs/method.md section 6).

A thin shell around :mod:`echoposed_ros.policy`: parameters -> frozen
:class:`~echoposed_ros.policy.ControllerConfig` -> :func:`~echoposed_ros.policy.control_step`
on its own timer at ``control_rate`` -> messages. Because the timer runs without input, a pose
stream that stops is noticed (``stale_input``, zero twist); a watchdog timer re-armed by every
pose runs an extra cycle right after ``stale_timeout``, so the zero twist follows the last pose
by ``stale_timeout`` plus scheduling latency, not plus a control period.

Subscribes ``echoposed/pose`` (``EchoPose``; best effort, depth 1: only the newest counts) and
``probe/image`` (``sensor_msgs/Image``, sensor-data QoS): with an image target, each frame is
scored against the target view (``policy.similarity``) for the fine alignment and the second opinion
(``docs/policy.md``, "Coarse to fine"); the fine search times a frame by its header stamp (when it was
taken, in this node's clock: stamps need synchronised clocks; a frame stamped ahead of the clock counts as
taken when received and is counted in ``/diagnostics``). Publishes, every control cycle:

- ``probe/cmd`` (``ProbeTwist``): body angular velocities of the orbit and probe factors, rad/s;
  exact for the true pose (any unknown left factor of the model) when both the poses and the
  target carry ensemble members (image targets), else in the gauge of the estimates;
- ``probe/cmd_twist`` (``geometry_msgs/TwistStamped``, frame ``probe``): the same motion as a
  Cartesian twist of the probe in its own frame (linear: apex velocity, m/s; angular: rad/s),
  for a servo controller (e.g. MoveIt Servo). This is the command a robot should execute: it
  does not depend on the rotation of the model's frame (``policy.controller`` docstring);
- ``guidance/status`` (``GuidanceStatus``) with the operator cue and the view match; and ``/diagnostics``;
- ``guidance/captured`` (``sensor_msgs/Image``): once the fine alignment has converged, the live frames
  that match the target (up to ``capture_frames`` per convergence), as received.

Services: ``guidance/set_target`` (``SetTarget``: an image, estimated through the pose node's
``echoposed/estimate``; a pose; or a standard view from the ``views_file`` table),
``guidance/start`` and ``guidance/stop`` (``std_srvs/Trigger``), ``adapt/sweep`` (``std_srvs/Trigger``):
the adaptation sweep (``echoposed_ros.adapt.sweep``, docs/adaptation.md), driven from the arm's probe
pose on ``probe/pose`` (``geometry_msgs/PoseStamped``) with guidance paused (state ``sweeping``); it
stops with zero twist when that pose is older than ``stale_timeout`` or on ``guidance/stop``, and guidance
resumes as it was when it ends. Run it with a multi-threaded
executor (``main`` does) so that an image target can wait for the estimate service.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from echoposed_msgs.msg import EchoPose, GuidanceStatus, ProbeTwist
from echoposed_msgs.srv import EstimatePose, SetTarget
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from ..adapt import AdaptError
from ..adapt.sweep import SweepRun, SweepSettings, plan_sweep, sweep_step
from ..config.params import Param
from ..estimator.fusion import fuse_still
from ..estimator.image import image_to_float
from ..geometry import CartesianTwist, matrix_to_quat_xyzw, quat_xyzw_to_matrix
from ..policy import (
    ControllerConfig,
    ControlOutput,
    GuidanceMemory,
    GuidanceState,
    PolicyError,
    PoseSample,
    Target,
    TargetKind,
    ViewMatcher,
    ViewSample,
    ViewTable,
    control_step,
    describe_fields,
    fixed_fields,
    load_view_table,
    pose_sample,
    target_from_quaternions,
)
from ..policy.controller import BodyTwist
from ..policy.similarity import fan_mask, fit_to
from .convert import echopose_msg, image_msg_to_array, pose_stamped_to_arrays, stamp_ns, vector3_msg
from .diagnostics import OK, WARN, DiagnosticsPublisher
from .params import declare_all, watch_parameters
from .process import SpinThread, run_node
from .qos import NEWEST_FRAME

__all__ = ['NODE_PARAMS', 'PARAMS', 'POLICY_PARAMS', 'ControllerNode', 'ControllerNodeConfig', 'main']

NODE_NAME = 'echoposed_controller'
FRAME_ID = 'probe'
_WATCHDOG_MARGIN_S = 0.002
_STAMP_AHEAD_S = 0.05   # s: an image stamped this far ahead of the node's clock comes from an unsynchronised clock

_START_UP = ' (read-only: read once at start-up; use guidance/start, guidance/stop and guidance/set_target to steer)'

#: Parameters of the node that are not part of the policy core's config (read once at start-up).
NODE_PARAMS = (
    Param('autostart', True, 'start guiding as soon as a target is set; false = wait for guidance/start'
          + _START_UP, read_only=True),
    Param('views_file', '', "YAML table of standard view poses (A4C, A2C, A3C) in the pose model's frame "
          '(docs/policy.md); empty = no named views' + _START_UP, read_only=True),
    Param('target_view', '', 'standard view to target at start-up, from views_file; empty = none' + _START_UP,
          read_only=True),
    Param('estimate_timeout', 5.0, 's, how long an image target waits for the echoposed/estimate service'
          ' (read-only: the service client is set up with it)', read_only=True),
    Param('diagnostics_period', 1.0, 's, period of the /diagnostics status (read-only: the diagnostics timer is '
          'built with this period at start-up)', read_only=True),
    Param('view_size', 64, 'px, image targets and live frames are compared at most this many pixels on their '
          'longer side (read-only: the target view is prepared with it when it is set)', read_only=True),
    Param('fan_threshold', 0.02, 'target images: intensities (0-1) above this are inside the fan the view match '
          'compares (read-only: the target view is prepared with it when it is set)', read_only=True),
    Param('capture_frames', 30, 'frames, the most matching frames published on guidance/captured per convergence '
          '(0 = none)' + _START_UP, read_only=True),
    Param('sweep_turn_max', 1.5707963267948966, 'rad, adaptation sweep: turns about the beam span +-this'
          + _START_UP, read_only=True),
    Param('sweep_turn_step', 0.2617993877991494, 'rad, adaptation sweep: step of the turns' + _START_UP,
          read_only=True),
    Param('sweep_tilt', 0.3490658503988659, 'rad, adaptation sweep: tilts about x and y' + _START_UP, read_only=True),
    Param('sweep_dwell', 1.2, 's, adaptation sweep: held at each pose (at least one cardiac cycle)' + _START_UP,
          read_only=True),
    Param('sweep_speed', 0.4, 'rad/s, adaptation sweep: speed between poses (also capped by max_probe_speed)'
          + _START_UP, read_only=True),
)


def _policy_param(name: str, default: Any, unit: str, description: str) -> Param:
    why = fixed_fields().get(name)
    if why:
        return Param(name, default, f'{unit}: {description} (read-only: {why})', read_only=True)
    return Param(name, default, f'{unit}: {description} (may change while running; checked with the rest '
                 'of the policy config)')


#: Policy parameters (same names as ControllerConfig): the gains, limits, thresholds and tolerances
#: may change while the node runs (``ros2 param set``); the rest are read-only.
POLICY_PARAMS = tuple(_policy_param(name, *row) for name, row in describe_fields().items())
#: Every declared parameter: the policy core's then the node's.
PARAMS = POLICY_PARAMS + NODE_PARAMS


@dataclass(frozen=True)
class ControllerNodeConfig:
    """The node's own parameters, checked (the policy's are in :class:`ControllerConfig`)."""

    autostart: bool
    views_file: str
    target_view: str
    estimate_timeout: float
    diagnostics_period: float
    view_size: int = 64
    fan_threshold: float = 0.02
    capture_frames: int = 30
    sweep: SweepSettings = SweepSettings()

    @classmethod
    def from_parameters(cls, v: dict[str, Any]) -> ControllerNodeConfig:
        for name in ('estimate_timeout', 'diagnostics_period'):
            if not v[name] > 0:
                raise PolicyError(f'{NODE_NAME}: parameter {name} = {v[name]!r} s; expected > 0')
        if not 8 <= v['view_size'] <= 1024:
            raise PolicyError(f"{NODE_NAME}: parameter view_size = {v['view_size']!r} px; expected 8 to 1024")
        if not 0 <= v['fan_threshold'] < 1:
            raise PolicyError(f"{NODE_NAME}: parameter fan_threshold = {v['fan_threshold']!r}; expected 0 <= x < 1")
        if v['capture_frames'] < 0:
            raise PolicyError(f"{NODE_NAME}: parameter capture_frames = {v['capture_frames']!r}; expected >= 0")
        if v['target_view'] and not v['views_file']:
            raise PolicyError(f"{NODE_NAME}: target_view = {v['target_view']!r} needs views_file (a table of view "
                              "poses in the pose model's frame); the model's frame is not known otherwise")
        try:
            sweep = SweepSettings(turn_max=float(v['sweep_turn_max']), turn_step=float(v['sweep_turn_step']),
                                  tilt=float(v['sweep_tilt']), dwell_s=float(v['sweep_dwell']),
                                  speed=float(v['sweep_speed']))
            plan_sweep(sweep)
        except AdaptError as exc:
            raise PolicyError(f'{NODE_NAME}: {exc}') from None
        return cls(autostart=bool(v['autostart']), views_file=str(v['views_file']),
                   target_view=str(v['target_view']), estimate_timeout=float(v['estimate_timeout']),
                   diagnostics_period=float(v['diagnostics_period']), view_size=int(v['view_size']),
                   fan_threshold=float(v['fan_threshold']), capture_frames=int(v['capture_frames']), sweep=sweep)


def _policy_config(values: dict[str, Any]) -> ControllerConfig:
    return ControllerConfig.from_mapping({k: values[k] for k in describe_fields()})


class ControllerNode(Node):
    """Thin shell: ``EchoPose`` in, ``ProbeTwist`` / ``TwistStamped`` / ``GuidanceStatus`` out."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        values = declare_all(self, PARAMS)
        self.config = _policy_config(values)
        self.node_config = ControllerNodeConfig.from_parameters(values)
        self.view_table: ViewTable | None = (load_view_table(self.node_config.views_file)
                                             if self.node_config.views_file else None)

        self._lock = threading.Lock()
        self._active = self.node_config.autostart
        self._target: Target | None = None
        self._sample: PoseSample | None = None
        self._seq = 0
        self._memory = GuidanceMemory()
        self._last: ControlOutput | None = None
        self._matcher: ViewMatcher | None = None     # the image target's view, None for other targets
        self._view: ViewSample | None = None
        self._view_seq = 0
        self._captured = 0
        self.bad_images = 0
        self.stamps_ahead = 0   # images stamped ahead of this node's clock
        self._arm: tuple[float, np.ndarray, np.ndarray] | None = None   # (received s, R (3, 3), apex m)
        self._sweep: SweepRun | None = None
        self._sweep_resume = False      # guidance was active when the sweep began
        self._sweep_result = ''
        # Counters for /diagnostics since the last report.
        self._window_start = time.monotonic()
        self._poses_in_window = 0
        self._ticks_in_window = 0
        self.invalid_poses = 0

        if self.node_config.target_view:
            self._target = self.view_table.target(self.node_config.target_view)  # type: ignore[union-attr]

        self.cmd_pub = self.create_publisher(ProbeTwist, 'probe/cmd', 10)
        self.twist_pub = self.create_publisher(TwistStamped, 'probe/cmd_twist', 10)
        self.status_pub = self.create_publisher(GuidanceStatus, 'guidance/status', 10)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.create_subscription(EchoPose, 'echoposed/pose', self._on_pose, qos)
        self.captured_pub = self.create_publisher(Image, 'guidance/captured', 10)
        self.create_subscription(Image, 'probe/image', self._on_image, NEWEST_FRAME)
        self.create_subscription(PoseStamped, 'probe/pose', self._on_arm_pose, 10)
        control_group = MutuallyExclusiveCallbackGroup()
        self.create_timer(self.config.control_period, self._on_tick, callback_group=control_group)
        # Watchdog: re-armed by every pose, it runs one control cycle just after the stale timeout so the
        # zero twist does not wait up to one more control period, then stays off until the next pose
        # (left periodic, it added 1 / stale_timeout cycles a second to the control rate without input).
        self._watchdog = self.create_timer(self.config.stale_timeout + _WATCHDOG_MARGIN_S, self._on_watchdog,
                                           callback_group=control_group)
        services = ReentrantCallbackGroup()
        self.create_service(SetTarget, 'guidance/set_target', self._on_set_target, callback_group=services)
        self.create_service(Trigger, 'guidance/start', self._on_start, callback_group=services)
        self.create_service(Trigger, 'guidance/stop', self._on_stop, callback_group=services)
        self.create_service(Trigger, 'adapt/sweep', self._on_sweep, callback_group=services)
        # The image-target service waits for the pose node's answer; that answer is taken by a helper
        # node spun in its own thread, so the controller itself runs on a SingleThreadedExecutor
        # (under a MultiThreadedExecutor its control timer fell to 3-11 Hz in some launches).
        # Its own name, given as a node-local remapping: the process-wide `-r __node:=NAME` a launch
        # passes would otherwise name it like the controller (two nodes of one name: duplicate
        # parameter services, and a shared rosout publisher that the first of them to go tears down).
        helper = f'{self.get_name()}_estimate_client'
        self._client_node = Node(helper, context=self.context, start_parameter_services=False,
                                 cli_args=['--ros-args', '-r', f'__node:={helper}'])
        self.estimate_client = self._client_node.create_client(EstimatePose, 'echoposed/estimate')
        self._client_executor = SingleThreadedExecutor(context=self.context)
        self._client_executor.add_node(self._client_node)
        self._client_spin = SpinThread(self._client_executor, name='estimate_client', period=0.1).start()
        watch_parameters(self, POLICY_PARAMS, _policy_config, self._set_config)
        self.diagnostics = DiagnosticsPublisher(self, f'{NODE_NAME}: guidance')
        self.create_timer(self.node_config.diagnostics_period, self._publish_diagnostics)
        target = self._target.name if self._target else 'none'
        self.get_logger().info(f'control at {self.config.control_rate:g} Hz, gain {self.config.gain:g} 1/s, '
                               f'target {target}, {"started" if self._active else "stopped"}')

    def _set_config(self, config: ControllerConfig) -> None:
        """A changed policy config (``ros2 param set``), checked whole: used from the next cycle."""
        with self._lock:
            self.config = config
        self.get_logger().info(f'policy parameters changed: gain {config.gain:g} 1/s, speed limits '
                               f'{config.max_orbit_speed:g} / {config.max_probe_speed:g} rad/s, '
                               f'uncertainty_threshold {config.uncertainty_threshold:g} rad^2')

    def destroy_node(self) -> None:
        # Stop and join the helper's thread before its executor and node go: a thread left inside
        # rclpy's wait at interpreter exit aborts the process ('terminate called without an active
        # exception', exit code 134; 9 of 20 SIGINT stops before this join), and one still inside it
        # when the executor is shut down reads freed memory (above).
        self._client_spin.stop(timeout=5.0)
        if not self._client_spin.alive:
            self._client_executor.shutdown(timeout_sec=1.0)
            self._client_node.destroy_node()
        super().destroy_node()

    # -- inputs ----------------------------------------------------------------------------------

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_pose(self, msg: EchoPose) -> None:
        q_v, q_p, m_v, m_p = _quaternions(msg)
        with self._lock:
            self._seq += 1
            sample = pose_sample(q_v, q_p, msg.uncertainty, self._now(), self._seq, msg.header.frame_id, m_v, m_p)
            self._sample = sample
            self._poses_in_window += 1
        self._watchdog.reset()
        if sample.pose is None:
            self.invalid_poses += 1
            self.get_logger().warning(f'echoposed/pose: {sample.problem}; holding', throttle_duration_sec=1.0)

    def _on_image(self, msg: Image) -> None:
        """Score a live frame against the image target (nothing without one); a bad frame is counted and
        skipped, never fatal."""
        with self._lock:
            matcher = self._matcher
        if matcher is None:
            return
        try:
            array, encoding = image_msg_to_array(msg, 'probe/image')
            score = matcher.match(fit_to(image_to_float(array, encoding, 'probe/image'), matcher.shape)).score
        except Exception as exc:
            self.bad_images += 1
            self.get_logger().warning(f'probe/image: {exc}; frame not scored', throttle_duration_sec=1.0)
            return
        now = self._now()
        stamp = stamp_ns(msg.header) * 1e-9
        if stamp > now + _STAMP_AHEAD_S:
            self.stamps_ahead += 1
            self.get_logger().warning(f"probe/image: stamp {stamp - now:.3f} s ahead of this node's clock "
                                      '(clocks not synchronised?); the fine search uses the time of receipt',
                                      throttle_duration_sec=5.0)
        # when the frame was taken: its stamp (0: none), never later than its receipt
        acquired = min(stamp, now) if stamp > 0 else float('nan')
        with self._lock:
            if matcher is not self._matcher:
                return
            self._view_seq += 1
            self._view = ViewSample(score, now, self._view_seq, acquired)
            capture = (self._memory.fine_converged and score >= self.config.fine_accept_match
                       and self._captured < self.node_config.capture_frames)
            if capture:
                self._captured += 1
        if capture:
            self.captured_pub.publish(msg)

    # -- control ---------------------------------------------------------------------------------

    def _on_watchdog(self) -> None:
        """The stale-timeout cycle: once per silence (the next pose re-arms it)."""
        self._watchdog.cancel()
        self._on_tick()

    def _on_arm_pose(self, msg: PoseStamped) -> None:
        try:
            R, apex = pose_stamped_to_arrays(msg, 'probe/pose')
        except ValueError as exc:   # a bad arm pose is dropped: a sweep then stops on the stale timeout
            self.get_logger().warning(f'probe/pose dropped: {exc}', throttle_duration_sec=1.0)
            return
        with self._lock:
            self._arm = (self._now(), R, apex)

    def _sweep_tick(self, now: float) -> ControlOutput:
        """One cycle of the running sweep (called with the lock held); ends it when it stops."""
        run = self._sweep
        assert run is not None
        received, R, apex = self._arm if self._arm is not None else (-float('inf'), run.R0, run.a0)
        out = sweep_step(run, now, R, apex, now - received, self.config.stale_timeout,
                         min(self.config.max_probe_speed, 2.5 * self.node_config.sweep.speed),
                         self.config.control_period)
        omega = out.twist.omega
        state = GuidanceState.SWEEPING
        if not out.running:
            self._sweep, self._sweep_result = None, out.cue
            # guidance as it was before the sweep, or started while it ran (guidance/start)
            self._active, self._memory = self._sweep_resume or self._active, GuidanceMemory()
            self.get_logger().info(out.cue)
            state = GuidanceState.STOPPED if not self._active else GuidanceState.IDLE
        # turns and tilts about the apex: the probe factor's body rate is the probe-frame angular velocity
        twist = BodyTwist(np.zeros(3), omega.copy())
        return ControlOutput(state, twist, out.twist, None, float('nan'), 0, out.cue)

    def _on_sweep(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            now = self._now()
            if self._sweep is not None:
                response.success, response.message = False, 'adaptation sweep already running'
                return response
            if self._arm is None or now - self._arm[0] > self.config.stale_timeout:
                response.success = False
                response.message = ('adaptation sweep refused: no arm pose on probe/pose in the last '
                                    f'{self.config.stale_timeout:g} s (geometry_msgs/PoseStamped of the probe apex)')
                return response
            plan = plan_sweep(self.node_config.sweep)
            self._sweep = SweepRun(plan, now, self._arm[1], self._arm[2], self.config.orbit_radius)
            self._sweep_resume, self._active, self._sweep_result = self._active, False, ''
        response.success = True
        response.message = f'adaptation sweep started: {len(plan.waypoints)} poses, {plan.duration_s:.0f} s'
        self.get_logger().info(response.message)
        return response

    def _on_tick(self) -> None:
        with self._lock:
            sweeping = self._sweep is not None
            if sweeping:
                out = self._last = self._sweep_tick(self._now())
                self._ticks_in_window += 1
                target_name = self._target.name if self._target else ''
        if sweeping:
            self._publish(out, target_name)
            return
        with self._lock:
            view = self._view if self._matcher is not None else None
            self._memory, out = control_step(self._memory, now=self._now(), active=self._active,
                                             target=self._target, sample=self._sample, config=self.config, view=view)
            if not self._memory.fine_converged:
                self._captured = 0
            self._last = out
            self._ticks_in_window += 1
            target_name = self._target.name if self._target else ''
        self._publish(out, target_name)

    def _publish(self, out: ControlOutput, target_name: str) -> None:
        stamp = self.get_clock().now().to_msg()
        cmd = ProbeTwist()
        cmd.header.stamp, cmd.header.frame_id = stamp, FRAME_ID
        cmd.orbit, cmd.probe = vector3_msg(out.twist.orbit), vector3_msg(out.twist.probe)
        twist = TwistStamped()
        twist.header.stamp, twist.header.frame_id = stamp, FRAME_ID
        twist.twist.linear, twist.twist.angular = vector3_msg(out.cartesian.v), vector3_msg(out.cartesian.omega)
        status = GuidanceStatus()
        status.header.stamp, status.header.frame_id = stamp, FRAME_ID
        status.state, status.state_name = int(out.state), out.state.label
        status.target = target_name
        nan = float('nan')
        status.effective_error = out.error.effective if out.error else nan
        status.orbit_error = out.error.orbit_angle if out.error else nan
        status.probe_error = out.error.probe_angle if out.error else nan
        status.uncertainty = float(out.uncertainty)
        status.frames_within_tolerance = int(out.frames_within_tolerance)
        status.view_match = float(out.view_match)
        status.disagree = bool(out.disagree)
        status.cue = out.cue
        self.cmd_pub.publish(cmd)
        self.twist_pub.publish(twist)
        self.status_pub.publish(status)

    def publish_zero(self) -> None:
        """Publish one hold-still command now (used on stop and on shutdown)."""
        zero = BodyTwist.zero()
        out = ControlOutput(GuidanceState.STOPPED, zero, CartesianTwist(zero.orbit, zero.probe), None,
                            float('nan'), 0, 'guidance stopped')
        self._publish(out, self._target.name if self._target else '')

    # -- services --------------------------------------------------------------------------------

    def _on_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            self._active, self._memory = True, GuidanceMemory()
            target = self._target.name if self._target else None
        response.success = True
        response.message = f'guidance started, target {target}' if target else 'guidance started (no target yet)'
        return response

    def _on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            self._active, self._memory = False, GuidanceMemory()
            if self._sweep is not None:
                self._sweep, self._sweep_result = None, 'adaptation sweep stopped by guidance/stop'
        self.publish_zero()
        response.success, response.message = True, 'guidance stopped: zero twist'
        return response

    def _on_set_target(self, request: SetTarget.Request, response: SetTarget.Response) -> SetTarget.Response:
        try:
            target, sigma2 = self._make_target(request)
        except PolicyError as exc:
            response.success, response.message = False, str(exc)
            self.get_logger().warning(f'guidance/set_target failed: {exc}')
            return response
        try:
            matcher = self._view_matcher(request) if request.kind == SetTarget.Request.KIND_IMAGE else None
        except Exception as exc:
            matcher = None
            self.get_logger().warning(f'image target: no fine alignment ({exc})')
        with self._lock:
            self._target, self._memory = target, GuidanceMemory()
            self._matcher, self._view, self._captured = matcher, None, 0
        header = EchoPose().header
        header.stamp, header.frame_id = self.get_clock().now().to_msg(), target.frame
        response.target = echopose_msg(header, target.pose.orbit, target.pose.probe, sigma2)
        response.success = True
        frame = f' in frame {target.frame!r}' if target.frame else ''
        ways = (f"; its estimate's members read it {len(target.readings)} more way(s), tried in turn where the view "
                'does not match at their mean' if target.readings else '')
        response.message = f'target {target.name}{frame}{ways}' + ('' if self._active else ' (guidance stopped)')
        self.get_logger().info(response.message)
        return response

    def _make_target(self, request: SetTarget.Request) -> tuple[Target, float]:
        if request.kind == SetTarget.Request.KIND_POSE:
            o, p = request.orbit, request.probe
            return target_from_quaternions([o.x, o.y, o.z, o.w], [p.x, p.y, p.z, p.w], 'pose', TargetKind.POSE), 0.0
        if request.kind == SetTarget.Request.KIND_VIEW:
            if self.view_table is None:
                raise PolicyError(f'view {request.view!r}: no view table (parameter views_file is empty); named views '
                                  "need poses in the pose model's frame: set views_file, or set the target from "
                                  'an image of the view (KIND_IMAGE)')
            return self.view_table.target(request.view), 0.0
        if request.kind == SetTarget.Request.KIND_IMAGE:
            return self._target_from_image(request)
        raise PolicyError(f'SetTarget.kind = {request.kind}; expected KIND_IMAGE (0), KIND_POSE (1) or KIND_VIEW (2)')

    def _view_matcher(self, request: SetTarget.Request) -> ViewMatcher:
        """The target view of an image request (its cine when it has one), at most ``view_size`` pixels on the
        longer side, compared inside its fan (PolicyError / EstimatorError naming what is wrong)."""
        msgs = list(request.cine) or [request.image]
        frames = []
        for i, m in enumerate(msgs):
            name = f'SetTarget.cine[{i}]' if request.cine else 'SetTarget.image'
            array, encoding = image_msg_to_array(m, name)
            frames.append(image_to_float(array, encoding, name))
        if len({f.shape for f in frames}) > 1:
            raise PolicyError(f'SetTarget.cine: frames of different sizes {sorted({f.shape for f in frames})}; '
                              'expected one size')
        h, w = frames[0].shape
        scale = min(1.0, self.node_config.view_size / max(h, w))
        shape = (max(2, round(h * scale)), max(2, round(w * scale)))
        stack = np.stack([fit_to(f, shape) for f in frames])
        return ViewMatcher(stack, fan_mask(stack, self.node_config.fan_threshold), self.config.match_smoothing)

    def _target_from_image(self, request: SetTarget.Request) -> tuple[Target, float]:
        """The target pose of an image request: the pose node's estimate of the image, or of every frame of the
        cine fused (``fuse_still``: the cycle's mean pose, as the pose node's cycle fusion reads live frames)."""
        service = self.estimate_client.srv_name
        timeout = self.node_config.estimate_timeout
        if not self.estimate_client.wait_for_service(timeout_sec=timeout):
            raise PolicyError(f"image target: the pose node's service {service} (EstimatePose) is not available "
                              f'after {timeout:g} s; start echoposed_pose, or set a KIND_POSE or KIND_VIEW target')
        images = list(request.cine) if request.cine else [request.image]
        poses = [self._estimate(image, f'SetTarget.cine[{i}]' if request.cine else 'SetTarget.image')
                 for i, image in enumerate(images)]
        sigma2 = float(np.median([p.uncertainty for p in poses]))
        frame = poses[0].header.frame_id
        if len(poses) == 1:
            q_v, q_p, m_v, m_p = _quaternions(poses[0])
        else:
            fused = fuse_still(*_members_of(poses), np.array([p.uncertainty for p in poses]),
                               self.config.uncertainty_threshold)
            q_v, q_p = matrix_to_quat_xyzw(fused.orbit).tolist(), matrix_to_quat_xyzw(fused.probe).tolist()
            m_v = matrix_to_quat_xyzw(fused.member_orbits).tolist()
            m_p = matrix_to_quat_xyzw(fused.member_probes).tolist()
        target = target_from_quaternions(q_v, q_p, 'image', TargetKind.IMAGE, frame, m_v, m_p,
                                         split=self.config.target_split)
        threshold = self.config.uncertainty_threshold
        if not (sigma2 <= threshold or any(r.sigma2 <= threshold for r in target.readings)):
            raise PolicyError(f'image target: the estimate is uncertain (sigma^2 = {sigma2:.3g} rad^2 > '
                              f'uncertainty_threshold {threshold:g}'
                              + (', median over the cine' if len(poses) > 1 else '')
                              + ', and none of its readings is sure within it); is the view in the image?')
        return target, sigma2

    def _estimate(self, image: Image, what: str) -> EchoPose:
        """The pose node's answer for one image (PolicyError naming ``what`` when there is none)."""
        service = self.estimate_client.srv_name
        timeout = self.node_config.estimate_timeout
        done = threading.Event()
        future = self.estimate_client.call_async(EstimatePose.Request(image=image))
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            self.estimate_client.remove_pending_request(future)
            raise PolicyError(f'image target: {service} gave no answer for {what} within {timeout:g} s')
        result = future.result()
        if result is None or not result.success:
            why = result.message if result is not None else 'no response'
            raise PolicyError(f'image target: {service} could not estimate {what}: {why}')
        return result.pose

    # -- diagnostics -----------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        elapsed = max(time.monotonic() - self._window_start, 1e-9)
        with self._lock:
            out, poses, ticks = self._last, self._poses_in_window, self._ticks_in_window
            self._poses_in_window = self._ticks_in_window = 0
            target = self._target.name if self._target else ''
            ways = len(self._target.readings) if self._target else 0
            reading = self._memory.reading
        self._window_start = time.monotonic()
        state = out.state if out else GuidanceState.IDLE
        values = {
            'state': state.label,
            'target': target,
            'target_reading': ('one' if not ways else 'the mean of all members' if reading == 0 else
                               f'reading {reading} of {ways}'),
            'pose_rate_hz': poses / elapsed,
            'control_rate_hz': ticks / elapsed,
            'effective_error_deg': (out.error.effective * 57.29577951308232) if out and out.error else float('nan'),
            'uncertainty_rad2': out.uncertainty if out else float('nan'),
            'frames_within_tolerance': out.frames_within_tolerance if out else 0,
            'invalid_poses': self.invalid_poses,
            'view_match': out.view_match if out else float('nan'),
            'image_disagrees_with_estimate': bool(out.disagree) if out else False,
            'fine_alignment': 'on' if self._matcher is not None and self.config.fine_enabled else
                              'off (no image target)' if self._matcher is None else 'off (fine_enabled false)',
            'bad_images': self.bad_images,
            'image_stamps_ahead_of_clock': self.stamps_ahead,
            'adaptation_sweep': 'running' if self._sweep is not None else (self._sweep_result or 'none'),
            'cue': out.cue if out else '',
            'errors_from': '' if not (out and out.error) else
                           'ungauged ensemble mean' if out.ungauged else 'canonical pose',
        }
        unsure = (GuidanceState.STALE_INPUT, GuidanceState.HOLD_UNCERTAIN, GuidanceState.COASTING,
                  GuidanceState.MISMATCH, GuidanceState.RECOVERING, GuidanceState.EXPLORING, GuidanceState.LOST)
        level = WARN if state in unsure else OK
        self.diagnostics.publish(level, f'{state.label}: {out.cue}' if out else state.label, values)


def _members_of(poses: list[EchoPose]) -> tuple[np.ndarray, np.ndarray]:
    """Members (N, K, 3, 3) of N estimates: their own members when every one has the same number, else each
    estimate's mean as its one member."""
    q = [_quaternions(p) for p in poses]     # (orbit, probe, member orbits, member probes) as (x, y, z, w)
    if len({len(m) for _, _, m_v, m_p in q for m in (m_v, m_p)}) == 1 and q[0][2]:
        return quat_xyzw_to_matrix(np.array([x[2] for x in q])), quat_xyzw_to_matrix(np.array([x[3] for x in q]))
    return quat_xyzw_to_matrix(np.array([[x[0]] for x in q])), quat_xyzw_to_matrix(np.array([[x[1]] for x in q]))


def _quaternions(msg: EchoPose) -> tuple[list[float], list[float], list[list[float]], list[list[float]]]:
    """(orbit, probe, member orbits, member probes) of an EchoPose as (x, y, z, w) lists."""
    def q(m: Any) -> list[float]:
        return [m.x, m.y, m.z, m.w]
    return q(msg.orbit), q(msg.probe), [q(m) for m in msg.member_orbit], [q(m) for m in msg.member_probe]


def _hold_still(node: ControllerNode) -> None:
    """Leave the robot holding still: a last zero twist (the context may already be gone)."""
    try:
        node.publish_zero()
    except Exception:
        pass


def main(args: list[str] | None = None) -> int:
    return run_node(ControllerNode, NODE_NAME, args, executor_factory=SingleThreadedExecutor,
                    cleanup=_hold_still)

if __name__ == '__main__':
    sys.exit(main())
