"""Watching a simulated guidance run: ground-truth error, loop rate, states, commands.

:class:`RunMonitor` is a node living in the launcher's process. It asks the simulator for the
target view's true pose (``sim/standard_view``; a request unanswered for ``retry_after`` s is sent
again, as a reply can be lost while discovery is still matching), follows ``probe/true_pose``
(simulator ground truth), ``guidance/status``, ``echoposed/pose``, ``probe/cmd`` and
``probe/image``, and turns them into a :meth:`summary` (JSON-ready) and a :meth:`plot` (error
against time, current and target slices). Truth poses are kept as they come and scored against
the target when asked (:meth:`true_errors`), those from before the target's answer too. Errors
in degrees in the summary, radians on the wire.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from echoposed_msgs.msg import EchoPose, GuidanceStatus, ProbeTwist
from echoposed_msgs.srv import StandardView
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from ..geometry import effective_error
from ..nodes.convert import echopose_msg_to_pose
from .description import LaunchError

__all__ = ['RunMonitor', 'RunTrace']


@dataclass
class RunTrace:
    """Time series of a run (t in s since the monitor started)."""

    true_t: list[float] = field(default_factory=list)
    true_pose: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)   # simulator ground truth
                                                                                   # (orbit, probe)
    status_t: list[float] = field(default_factory=list)
    estimated_error: list[float] = field(default_factory=list)  # rad, controller's estimate
    states: list[str] = field(default_factory=list)
    pose_t: list[float] = field(default_factory=list)
    sigma2: list[float] = field(default_factory=list)           # rad^2
    cmd_t: list[float] = field(default_factory=list)
    orbit_speed: list[float] = field(default_factory=list)      # rad/s
    probe_speed: list[float] = field(default_factory=list)      # rad/s
    image_count: int = 0


def _rate(t: list[float]) -> float:
    return (len(t) - 1) / (t[-1] - t[0]) if len(t) >= 2 and t[-1] > t[0] else 0.0


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
        self.create_subscription(EchoPose, 'probe/true_pose', self._on_truth, 10)
        self.create_subscription(GuidanceStatus, 'guidance/status', self._on_status, 10)
        self.create_subscription(EchoPose, pose_topic, self._on_pose, 10)
        self.create_subscription(ProbeTwist, 'probe/cmd', self._on_cmd, 10)
        self.create_subscription(Image, 'probe/image', self._on_image, qos_profile_sensor_data)
        self.create_timer(0.2, self._ask_for_target)

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
            self.target_pose = echopose_msg_to_pose(result.pose)
            self.target_image = _image(result.image)
        elif result is not None:
            self.target_refused = result.message or 'refused'
            self.get_logger().error(f'sim/standard_view refused {self.view!r}: {self.target_refused}')

    def _on_truth(self, msg: EchoPose) -> None:
        self.trace.true_t.append(self._now())
        self.trace.true_pose.append(echopose_msg_to_pose(msg))

    def _on_status(self, msg: GuidanceStatus) -> None:
        self.trace.status_t.append(self._now())
        self.trace.estimated_error.append(float(msg.effective_error))
        self.trace.states.append(msg.state_name)

    def _on_pose(self, msg: EchoPose) -> None:
        self.trace.pose_t.append(self._now())
        self.trace.sigma2.append(float(msg.uncertainty))

    def _on_cmd(self, msg: ProbeTwist) -> None:
        self.trace.cmd_t.append(self._now())
        self.trace.orbit_speed.append(float(np.linalg.norm([msg.orbit.x, msg.orbit.y, msg.orbit.z])))
        self.trace.probe_speed.append(float(np.linalg.norm([msg.probe.x, msg.probe.y, msg.probe.z])))

    def _on_image(self, msg: Image) -> None:
        self.trace.image_count += 1
        self.last_image = _image(msg)

    # -- results ----------------------------------------------------------------------------------

    def true_errors(self) -> np.ndarray:
        """``(N,)`` rad: the effective error of each ground-truth pose so far to the target (every
        one, those from before the target's answer too); empty while the target is unknown."""
        poses, target = list(self.trace.true_pose), self.target_pose
        if target is None or not poses:
            return np.zeros(0)
        orbit, probe = np.stack([g[0] for g in poses]), np.stack([g[1] for g in poses])
        return effective_error((orbit, probe), (np.broadcast_to(target[0], orbit.shape),
                                                np.broadcast_to(target[1], probe.shape)))

    def converged_for(self) -> float:
        """Seconds the controller has been reporting 'converged' without a break (0 if not now)."""
        t, states = self.trace.status_t, self.trace.states
        if not states or states[-1] != 'converged':
            return 0.0
        i = len(states) - 1
        while i > 0 and states[i - 1] == 'converged':
            i -= 1
        return t[-1] - t[i]

    def summary(self) -> dict[str, Any]:
        tr, errors = self.trace, self.true_errors()
        final_state = tr.states[-1] if tr.states else 'none'
        converged_at = next((t for t, s in zip(tr.status_t, tr.states) if s == 'converged'), None)
        return {
            'view': self.view,
            'target_known': self.target_pose is not None,
            'target_requests': self.target_requests,
            'target_refused': self.target_refused or None,
            'final_error_deg': float(np.degrees(errors[-1])) if errors.size else None,
            'initial_error_deg': float(np.degrees(errors[0])) if errors.size else None,
            'final_estimated_error_deg': float(np.degrees(tr.estimated_error[-1])) if tr.estimated_error else None,
            'converged': final_state == 'converged',
            'first_converged_s': converged_at,
            'final_state': final_state,
            'loop_hz': _rate(tr.pose_t),
            'command_hz': _rate(tr.cmd_t),
            'poses': len(tr.pose_t),
            'images': tr.image_count,
            'final_sigma2': tr.sigma2[-1] if tr.sigma2 else None,
            'max_orbit_speed': max(tr.orbit_speed, default=0.0),
            'max_probe_speed': max(tr.probe_speed, default=0.0),
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
        t0 = tr.true_t[0] if tr.true_t else 0.0
        errors = self.true_errors()
        if errors.size:   # none when the simulator never told the target's pose
            ax.plot(np.subtract(tr.true_t[:errors.size], t0), np.degrees(errors),
                    label='actual (simulator ground truth)')
        ax.plot(np.subtract(tr.status_t, t0), np.degrees(tr.estimated_error), label='estimated (controller)',
                alpha=0.7)
        ax.set_xlim(left=0)
        ax.set_xlabel('time since the first ground-truth pose (s)')
        ax.set_ylabel('effective error to target (deg)')
        final_deg = np.degrees(errors[-1]) if errors.size else float('nan')
        ax.set_title(f'guidance to {self.view}: final {final_deg:.1f} deg')
        ax.grid(alpha=0.3)
        ax.legend()
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


def _image(msg: Image) -> np.ndarray:
    return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, :msg.width].copy()
