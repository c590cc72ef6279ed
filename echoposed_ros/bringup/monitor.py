"""Watching a simulated guidance run: ground-truth error, loop rate, states, commands.

:class:`RunMonitor` is a node living in the launcher's process. It asks the simulator for the
target view's true pose (``sim/standard_view``; a request unanswered for ``retry_after`` s is sent
again, as a reply can be lost while discovery is still matching), follows ``probe/true_pose``
(simulator ground truth), ``guidance/status``, ``echoposed/pose``, ``probe/cmd`` and
``probe/image``, and turns them into a :meth:`summary` (JSON-ready) and a :meth:`plot` (error
against time, current and target slices). Errors in degrees in the summary, radians on the wire.

Its memory is bounded whatever the run's length: the summary comes from running figures (counts,
first and last values, maxima), and the plotted series are :class:`DecimatedSeries` (the whole
run at a resolution that halves each time the buffer fills). Truth poses are kept as they come
(decimated) and scored against the target when asked (:meth:`true_errors`), those from before
the target's answer too. A malformed message (a zero quaternion, an image whose size, step and
data disagree) is rejected and counted per topic in the summary; any other error in a callback
propagates, and :class:`SpinThread` turns it into a failed run.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from echoposed_msgs.msg import EchoPose, GuidanceStatus, ProbeTwist
from echoposed_msgs.srv import StandardView
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from ..errors import EchoposedError
from ..estimator.image import image_to_float
from ..geometry import effective_error
from ..nodes.convert import echopose_msg_to_pose, image_msg_to_array
from ..nodes.process import SpinThread
from .description import LaunchError
from .series import DecimatedSeries, Running

__all__ = ['RunMonitor', 'RunTrace', 'SpinThread']

def _pose_row(pose: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.concatenate([pose[0].ravel(), pose[1].ravel()])


def _row_pose(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return rows[..., :9].reshape(*rows.shape[:-1], 3, 3), rows[..., 9:].reshape(*rows.shape[:-1], 3, 3)


@dataclass
class RunTrace:
    """A run's bounded record (t in s since the monitor started; rotations as (3, 3) matrices).

    truth: ground-truth poses (orbit, probe) flattened to 18 values, decimated; first_truth and
    last_truth: the first and the last one, always exact. status: the controller's estimated
    error (rad), the state's number and the view match, decimated. poses, commands: running rates (last
    value: sigma^2 in rad^2).
    """

    truth: DecimatedSeries = field(default_factory=lambda: DecimatedSeries(18))
    first_truth: tuple[np.ndarray, np.ndarray] | None = None
    last_truth: tuple[np.ndarray, np.ndarray] | None = None
    status: DecimatedSeries = field(default_factory=lambda: DecimatedSeries(3))
    view_match: float | None = None             # the last view match reported (image targets)
    fine_reports: int = 0                       # status reports in fine_aligning
    last_estimated_error: float | None = None   # rad
    state: str | None = None                    # the last state reported
    first_converged_t: float | None = None
    converged_since: float | None = None        # start of the current run of 'converged' reports
    last_status_t: float | None = None
    poses: Running = field(default_factory=Running)       # last: sigma^2 (rad^2)
    commands: Running = field(default_factory=Running)
    max_orbit_speed: float = 0.0    # rad/s
    max_probe_speed: float = 0.0    # rad/s
    image_count: int = 0
    received: dict[str, int] = field(default_factory=dict)   # topic -> messages taken
    rejected: dict[str, int] = field(default_factory=dict)   # topic -> malformed messages among them
    last_rejection: str = ''


class RunMonitor(Node):
    """Collects a run's trace; ``view`` is the target's standard view name in the simulator;
    ``pose_topic`` the pose stream the controller consumes (its rate is the loop rate)."""

    def __init__(self, view: str, pose_topic: str = 'echoposed/pose', retry_after: float = 2.0,
                 **kwargs: Any) -> None:
        super().__init__('echoposed_monitor', **kwargs)
        if not retry_after > 0:
            raise LaunchError(f'retry_after = {retry_after!r} s; expected > 0')
        self.view = view
        self.retry_after = retry_after
        self.target_requests = 0
        self.trace = RunTrace()
        self.target_pose: tuple[np.ndarray, np.ndarray] | None = None
        self.target_image: np.ndarray | None = None
        self.last_image: np.ndarray | None = None
        self._start = time.monotonic()
        self._views = self.create_client(StandardView, 'sim/standard_view')
        self._pending = None
        self._asked_at = 0.0
        self.target_refused = ''   # the simulator's reason when it refused the view (then not asked again)
        topics: list[tuple[type, str, Callable[[Any], None], Any]] = [
            (EchoPose, 'probe/true_pose', self._on_truth, 10),
            (GuidanceStatus, 'guidance/status', self._on_status, 10),
            (EchoPose, pose_topic, self._on_pose, 10),
            (ProbeTwist, 'probe/cmd', self._on_cmd, 10),
            (Image, 'probe/image', self._on_image, qos_profile_sensor_data),
        ]
        for msg_type, topic, callback, qos in topics:
            self.create_subscription(msg_type, topic, self._guarded(topic, callback), qos)
        self.create_timer(0.2, self._ask_for_target)

    def _guarded(self, topic: str, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        """``callback`` with a malformed message (a ValueError or project error) rejected and counted."""
        def guarded(msg: Any) -> None:
            self.trace.received[topic] = self.trace.received.get(topic, 0) + 1
            try:
                callback(msg)
            except (EchoposedError, ValueError) as exc:
                self._reject(topic, str(exc))
        return guarded

    def _reject(self, topic: str, why: str) -> None:
        self.trace.rejected[topic] = self.trace.rejected.get(topic, 0) + 1
        self.trace.last_rejection = f'{topic}: {why}'
        self.get_logger().warning(f'rejected a message on {topic}: {why}', throttle_duration_sec=2.0)

    def _now(self) -> float:
        return time.monotonic() - self._start

    def _ask_for_target(self) -> None:
        if self.target_pose is not None or self.target_refused or not self._views.service_is_ready():
            return
        if self._pending is not None:
            if self._now() - self._asked_at < self.retry_after:
                return
            self._views.remove_pending_request(self._pending)   # its reply was lost: ask again
            self.get_logger().warning(f'sim/standard_view gave no answer within {self.retry_after:g} s; '
                                      'asking again')
        self._asked_at = self._now()
        self.target_requests += 1
        self._pending = self._views.call_async(StandardView.Request(view=self.view, cardiac_phase=0.0))
        self._pending.add_done_callback(self._on_target)

    def _on_target(self, future: Any) -> None:
        if future is not self._pending:   # an abandoned request answered after all
            return
        result = future.result()
        self._pending = None
        if result is not None and result.success:
            try:
                target_pose = echopose_msg_to_pose(result.pose)
            except (EchoposedError, ValueError) as exc:
                self._reject('sim/standard_view', f'pose of {self.view!r}: {exc}')
                self.target_refused = f'malformed answer: {exc}'
                return
            self.target_pose = target_pose
            try:
                self.target_image = _image(result.image, 'sim/standard_view image')
            except (EchoposedError, ValueError) as exc:   # the target is known; only its picture is missing
                self._reject('sim/standard_view', str(exc))
        elif result is not None:
            self.target_refused = result.message or 'refused'
            self.get_logger().error(f'sim/standard_view refused {self.view!r}: {self.target_refused}')

    def _on_truth(self, msg: EchoPose) -> None:
        pose = echopose_msg_to_pose(msg)
        tr = self.trace
        tr.truth.append(self._now(), _pose_row(pose))
        tr.first_truth = pose if tr.first_truth is None else tr.first_truth
        tr.last_truth = pose

    def _on_status(self, msg: GuidanceStatus) -> None:
        t, tr = self._now(), self.trace
        error = float(msg.effective_error)
        tr.status.append(t, (error, float(msg.state), float(msg.view_match)))
        tr.last_estimated_error = error
        tr.view_match = float(msg.view_match) if math.isfinite(msg.view_match) else tr.view_match
        tr.fine_reports += msg.state_name == 'fine_aligning'
        if msg.state_name == 'converged':
            if tr.state != 'converged':
                tr.converged_since = t
            if tr.first_converged_t is None:
                tr.first_converged_t = t
        tr.state, tr.last_status_t = msg.state_name, t

    def _on_pose(self, msg: EchoPose) -> None:
        self.trace.poses.add(self._now(), float(msg.uncertainty))

    def _on_cmd(self, msg: ProbeTwist) -> None:
        tr = self.trace
        tr.commands.add(self._now())
        tr.max_orbit_speed = max(tr.max_orbit_speed, float(np.linalg.norm([msg.orbit.x, msg.orbit.y, msg.orbit.z])))
        tr.max_probe_speed = max(tr.max_probe_speed, float(np.linalg.norm([msg.probe.x, msg.probe.y, msg.probe.z])))

    def _on_image(self, msg: Image) -> None:
        self.last_image = _image(msg, 'probe/image')
        self.trace.image_count += 1

    # -- results ----------------------------------------------------------------------------------

    def _errors(self, rows: np.ndarray) -> np.ndarray:
        target = self.target_pose
        if target is None or not len(rows):
            return np.zeros(0)
        orbit, probe = _row_pose(np.asarray(rows, dtype=np.float64))
        return effective_error((orbit, probe), (np.broadcast_to(target[0], orbit.shape),
                                                np.broadcast_to(target[1], probe.shape)))

    def true_errors(self) -> np.ndarray:
        """``(N,)`` rad: the effective error to the target of each kept ground-truth pose (every one
        while fewer than the series' capacity have come, then a decimated record of the whole run;
        those from before the target's answer too); empty while the target is unknown."""
        return self._errors(self.trace.truth.values)

    def converged_for(self) -> float:
        """Seconds the controller has been reporting 'converged' without a break (0 if not now)."""
        tr = self.trace
        if tr.state != 'converged' or tr.converged_since is None or tr.last_status_t is None:
            return 0.0
        return tr.last_status_t - tr.converged_since

    @property
    def rejected_messages(self) -> int:
        """Malformed messages rejected so far, all topics together."""
        return sum(self.trace.rejected.values())

    def summary(self) -> dict[str, Any]:
        tr = self.trace
        ends = [p for p in (tr.first_truth, tr.last_truth) if p is not None]
        errors = self._errors(np.stack([_pose_row(p) for p in ends])) if ends else np.zeros(0)
        final_state = tr.state if tr.state is not None else 'none'
        error = tr.last_estimated_error
        return {
            'view': self.view,
            'target_known': self.target_pose is not None,
            'target_requests': self.target_requests,
            'target_refused': self.target_refused or None,
            'final_error_deg': float(np.degrees(errors[-1])) if errors.size else None,
            'initial_error_deg': float(np.degrees(errors[0])) if errors.size else None,
            'final_estimated_error_deg': float(np.degrees(error)) if error is not None else None,
            'converged': final_state == 'converged',
            'first_converged_s': tr.first_converged_t,
            'final_state': final_state,
            'final_view_match': tr.view_match,
            'fine_alignment_reports': tr.fine_reports,
            'loop_hz': tr.poses.rate,
            'command_hz': tr.commands.rate,
            'poses': tr.poses.count,
            'images': tr.image_count,
            'final_sigma2': tr.poses.last,
            'max_orbit_speed': tr.max_orbit_speed,
            'max_probe_speed': tr.max_probe_speed,
            'rejected_messages': self.rejected_messages,
            'rejected_by_topic': dict(sorted(tr.rejected.items())),
            'last_rejection': tr.last_rejection or None,
            'duration_s': self._now(),
        }

    def plot(self, path: str | Path) -> Path:
        """Error against time (true and estimated), the current slice and the target slice."""
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt

        tr = self.trace
        fig = plt.figure(figsize=(12, 4.2), constrained_layout=True)
        grid = fig.add_gridspec(1, 4)
        ax = fig.add_subplot(grid[0, :2])
        true_t = tr.truth.t
        t0 = true_t[0] if true_t.size else 0.0
        errors = self.true_errors()
        if errors.size:   # none when the simulator never told the target's pose
            ax.plot(true_t[:errors.size] - t0, np.degrees(errors), label='actual (simulator ground truth)')
        st = tr.status.values
        ax.plot(tr.status.t - t0, np.degrees(st[:, 0]), label='estimated (controller)', alpha=0.7)
        fine = st[:, 1] == GuidanceStatus.STATE_FINE_ALIGNING if len(st) else np.zeros(0, bool)
        if fine.any():   # the fine alignment: shaded, with the view match it climbs on a second axis
            ts = tr.status.t - t0
            ax.fill_between(ts, 0, 1, where=fine, transform=ax.get_xaxis_transform(), color='tab:green', alpha=0.15,
                            step='post', label='fine alignment (image match)')
            am = ax.twinx()
            am.plot(ts, st[:, 2], color='tab:green', lw=0.8)
            am.set_ylabel('view match (NCC)', color='tab:green')
            am.set_ylim(min(0.5, float(np.nanmin(st[:, 2])) if np.isfinite(st[:, 2]).any() else 0.5), 1.0)
        ax.set_xlim(left=0)
        ax.set_xlabel('time since the first ground-truth pose (s)')
        ax.set_ylabel('effective error to target (deg)')
        final = self.summary()['final_error_deg']
        final_deg = final if final is not None else float('nan')
        ax.set_title(f'guidance to {self.view}: final {final_deg:.1f} deg')
        ax.grid(alpha=0.3)
        ax.legend(loc='center right', fontsize='small')
        for i, (image, title) in enumerate(((self.last_image, 'current slice'), (self.target_image, 'target slice'))):
            a = fig.add_subplot(grid[0, 2 + i])
            if image is not None:
                a.imshow(image, cmap='gray', vmin=0, vmax=255)
            a.set_title(title)
            a.axis('off')
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def _image(msg: Image, name: str) -> np.ndarray:
    """An image message -> uint8 ``(H, W)`` grey for display; EstimatorError (a ValueError) naming
    ``name`` when its size, step, data length or encoding is wrong."""
    array, encoding = image_msg_to_array(msg, name)
    return np.rint(image_to_float(array, encoding, name) * 255.0).astype(np.uint8)
