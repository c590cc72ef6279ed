"""Adapt node ``echoposed_adapt``: adapt the pose model to the patient under the probe, from the live graph.

On ``adapt/run`` (``std_srvs/Trigger``; or once at start-up with ``autostart``) it asks the
controller for the adaptation sweep (``adapt/sweep``), records every frame of ``probe/image``
(``sensor_msgs/Image``) and the arm's probe pose on ``probe/pose`` (``geometry_msgs/PoseStamped``)
until the controller reports the sweep done (``guidance/status``), pairs each frame with the pose
at its stamp (``echoposed_ros.adapt.recording.pair_frames``) and writes ``recording.npz``; then runs
the fine-tune as a child process (``echoposed adapt --recording``, needs torch) and, when it
succeeds, sets the pose node's ``model_path`` to the adapted model (the pose node loads it before it
swaps). Guidance goes on with the old model while the fine-tune runs. Every step, its figures and any
failure (with the reason) are on ``/diagnostics``; a failed step leaves the running model as it was.
Files go to ``out_dir``/``<time>`` (``out_dir`` empty: the cache's ``adapt`` folder).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from echoposed_msgs.msg import GuidanceStatus
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from ..adapt import AdaptError
from ..adapt.finetune import AdaptSettings
from ..adapt.recording import pair_frames
from ..config.params import Param
from ..estimator.image import image_to_float
from ..eval.frames import to_mono8
from ..paths import cache_dir
from .convert import image_msg_to_array, pose_stamped_to_arrays, stamp_ns
from .diagnostics import ERROR, OK, WARN, DiagnosticsPublisher
from .params import declare_all
from .process import run_node

__all__ = ['PARAMS', 'AdaptNode', 'main']

NODE_NAME = 'echoposed_adapt'
_RO = ' (read-only: read at start-up)'

PARAMS = (
    Param('autostart', False, 'run the adaptation once, as soon as the arm pose and images arrive' + _RO,
          read_only=True),
    Param('model_path', '', 'the model to adapt; empty = the shipped models/echoposed_k5.onnx' + _RO, read_only=True),
    Param('out_dir', '', "folder for each run's files (a sub-folder per run); empty = the cache's adapt folder" + _RO,
          read_only=True),
    Param('budget', 300.0, 's of fine-tuning (the learning-rate schedule ends inside it)' + _RO, read_only=True),
    Param('sweep_weight', 0.5, 'share of the fine-tune steps drawn from the sweep (the rest: phantoms)' + _RO,
          read_only=True),
    Param('phantom_seeds', '0-19', 'phantom patients of the other steps' + _RO, read_only=True),
    Param('blend', 0.5, "share of the fine-tuned weights in the adapted model, the rest the model's own (1: the "
          'fine-tune alone; docs/adaptation.md)' + _RO, read_only=True),
    Param('device', 'auto', "training device: 'auto', 'cpu', 'cuda' or 'cuda:N'" + _RO, read_only=True),
    Param('orbit_radius', 0.075, 'm, probe apex to heart centre (labels of the sweep)' + _RO, read_only=True),
    Param('pose_node', 'echoposed_pose', 'node whose model_path is set to the adapted model; empty = none' + _RO,
          read_only=True),
    Param('sweep_timeout', 5.0, 's without a status of the running sweep from the controller (guidance/status) '
          'after which the adaptation fails' + _RO, read_only=True),
    Param('diagnostics_period', 1.0, 's, period of the /diagnostics status' + _RO, read_only=True),
)


class AdaptNode(Node):
    """States: idle -> sweeping -> training -> loading -> done (or failed, with the reason)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        v = declare_all(self, PARAMS)
        for name in ('orbit_radius', 'sweep_timeout', 'diagnostics_period'):
            if not v[name] > 0:
                raise AdaptError(f'{NODE_NAME}: parameter {name} = {v[name]!r}; expected > 0')
        try:   # the fine-tune's own checks, at start-up rather than after the sweep
            AdaptSettings(budget_s=float(v['budget']), sweep_weight=float(v['sweep_weight']), blend=float(v['blend']))
        except AdaptError as exc:
            raise AdaptError(f'{NODE_NAME}: parameters budget / sweep_weight / blend: {exc}') from None
        self.params = v
        self._lock = threading.Lock()
        self.state, self.reason, self.adapted = 'idle', '', ''
        self._frames: list[np.ndarray] = []
        self._stamps: list[int] = []
        self._poses: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._seen_sweeping = False
        self._deadline = 0.0
        self._child: subprocess.Popen | None = None
        self._run_dir: Path | None = None
        self._autostart = bool(v['autostart'])
        self.create_subscription(Image, 'probe/image', self._on_image, qos_profile_sensor_data)
        self.create_subscription(PoseStamped, 'probe/pose', self._on_pose, 50)
        self.create_subscription(GuidanceStatus, 'guidance/status', self._on_status, 10)
        self.sweep_client = self.create_client(Trigger, 'adapt/sweep')
        node = str(v['pose_node']).strip('/')
        self.param_client = (self.create_client(SetParameters, f'{node}/set_parameters')
                             if node else None)   # relative: the pose node's services in this namespace
        self.create_service(Trigger, 'adapt/run', self._on_run)
        self.create_timer(0.2, self._on_timer)
        self.diagnostics = DiagnosticsPublisher(self, f'{NODE_NAME}: adaptation')
        self.create_timer(float(v['diagnostics_period']), self._publish_diagnostics)

    # -- inputs ----------------------------------------------------------------------------------

    def _on_image(self, msg: Image) -> None:
        with self._lock:
            if self.state != 'sweeping' and not self._autostart:
                return
        try:
            array, encoding = image_msg_to_array(msg, 'probe/image')
            frame = to_mono8(image_to_float(array, encoding, 'probe/image'))
        except Exception as exc:   # a bad frame is left out of the sweep (the node goes on)
            self.get_logger().warning(f'probe/image frame left out: {exc}', throttle_duration_sec=1.0)
            return
        stamp = stamp_ns(msg.header)
        start = False
        with self._lock:
            if self.state == 'sweeping':
                self._frames.append(frame)
                self._stamps.append(stamp)
            elif self._autostart and self._poses:   # autostart: images and the arm pose are both there
                self._autostart, start = False, True
        if start:
            self._start()

    def _on_pose(self, msg: PoseStamped) -> None:
        try:
            sample = (stamp_ns(msg.header), *pose_stamped_to_arrays(msg, 'probe/pose'))
        except ValueError as exc:
            self.get_logger().warning(f'probe/pose left out: {exc}', throttle_duration_sec=1.0)
            return
        with self._lock:
            if self.state == 'sweeping' or not self._poses:
                self._poses.append(sample)
            else:
                self._poses[-1] = sample   # keep the newest while idle

    def _on_status(self, msg: GuidanceStatus) -> None:
        end = None
        with self._lock:
            if self.state != 'sweeping':
                return
            if msg.state == GuidanceStatus.STATE_SWEEPING:
                self._seen_sweeping = True
                self._deadline = time.monotonic() + float(self.params['sweep_timeout'])
            elif self._seen_sweeping:
                end = msg.cue
        if end is not None:
            self._sweep_ended(end)

    # -- steps -----------------------------------------------------------------------------------

    def _on_run(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self._start()
        return response

    def _start(self) -> tuple[bool, str]:
        """Ask the controller for the sweep (the answer comes in :meth:`_on_sweep_answer`); never blocks, so
        the node runs on a single-threaded executor."""
        with self._lock:
            if self.state in ('sweeping', 'training', 'loading'):
                return False, f'adaptation already {self.state}'
            self.state, self.reason, self._seen_sweeping = 'sweeping', '', False
            self._frames, self._stamps = [], []
            self._poses = self._poses[-1:]
            self._deadline = time.monotonic() + float(self.params['sweep_timeout'])
        if not self.sweep_client.service_is_ready():
            return self._fail('no adapt/sweep service (is the controller running?)')
        self.sweep_client.call_async(Trigger.Request()).add_done_callback(self._on_sweep_answer)
        return True, 'adaptation started: sweep requested from the controller'

    def _on_sweep_answer(self, future: Any) -> None:
        result = future.result()
        if result is None or not result.success:
            self._fail(f'the controller refused the sweep: {result.message if result else "no answer"}')
        else:
            self.get_logger().info(result.message)

    def _fail(self, reason: str) -> tuple[bool, str]:
        with self._lock:
            self.state, self.reason = 'failed', reason
            self._frames, self._stamps = [], []
        self.get_logger().error(f'adaptation failed: {reason}')
        return False, reason

    def _sweep_ended(self, cue: str) -> None:
        if cue != 'adaptation sweep done':
            self._fail(f'sweep ended early: {cue}')
            return
        with self._lock:
            frames, stamps, poses = self._frames, self._stamps, list(self._poses)
            self.state = 'training'
        try:
            rec = pair_frames(frames, np.array(stamps, np.int64), np.array([p[0] for p in poses], np.int64),
                              np.array([p[1] for p in poses]), np.array([p[2] for p in poses]),
                              float(self.params['orbit_radius']))
        except AdaptError as exc:
            self._fail(f'sweep recording: {exc} ({len(frames)} frames, {len(poses)} arm poses)')
            return
        root = Path(self.params['out_dir']) if self.params['out_dir'] else cache_dir() / 'adapt'
        run_dir = root / time.strftime('%Y%m%d-%H%M%S')
        rec.meta.update(source='live', frames_received=len(frames))
        rec.save(run_dir / 'recording.npz')
        cmd = [sys.executable, '-m', 'echoposed_ros.cli', 'adapt', '--recording', str(run_dir / 'recording.npz'),
               '--out', str(run_dir), '--budget', f"{float(self.params['budget'])}s",
               '--sweep-weight', str(float(self.params['sweep_weight'])),
               '--phantom-seeds', str(self.params['phantom_seeds']), '--device', str(self.params['device']),
               '--blend', str(float(self.params['blend'])),
               '--cache', str(cache_dir() / 'phantoms')]
        if self.params['model_path']:
            cmd += ['--model', str(self.params['model_path'])]
        log = open(run_dir / 'adapt.log', 'w')
        with self._lock:
            self._run_dir = run_dir
            self._child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        log.close()
        self.get_logger().info(f'sweep recorded: {len(rec)} frames in {run_dir}; fine-tuning for '
                               f"{float(self.params['budget']):g} s")

    def _on_timer(self) -> None:
        with self._lock:
            state, child, run_dir = self.state, self._child, self._run_dir
            late = state == 'sweeping' and time.monotonic() > self._deadline
        if late:
            self._fail('the controller did not report the end of the sweep in time')
        if state != 'training' or child is None or child.poll() is None:
            return
        with self._lock:
            self._child = None
        assert run_dir is not None
        if child.returncode != 0:
            tail = (run_dir / 'adapt.log').read_text().strip().splitlines()[-1:] or ['']
            self._fail(f'fine-tune exited {child.returncode}: {tail[0]} (log {run_dir / "adapt.log"})')
            return
        model = run_dir / 'adapted.onnx'
        with self._lock:
            self.adapted = str(model)
            self.state = 'loading' if self.param_client is not None else 'done'
        if self.param_client is not None:
            self._load(model)

    def _load(self, model: Path) -> None:
        """Set the pose node's model_path (the answer comes in :meth:`_on_loaded`)."""
        assert self.param_client is not None
        if not self.param_client.service_is_ready():
            self._fail(f'no {self.param_client.srv_name} service: the adapted model {model} is not in use')
            return
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(model))
        request = SetParameters.Request(parameters=[ParameterMsg(name='model_path', value=value)])
        self.param_client.call_async(request).add_done_callback(self._on_loaded)

    def _on_loaded(self, future: Any) -> None:
        answer = future.result()
        result = answer.results[0] if answer is not None and answer.results else None
        if result is None or not result.successful:
            self._fail(f'the pose node refused the adapted model: {result.reason if result else "no answer"}')
            return
        with self._lock:
            self.state = 'done'
        self.get_logger().info(f'the pose node now runs the adapted model {self.adapted}')

    def _publish_diagnostics(self) -> None:
        with self._lock:
            values = {'state': self.state, 'frames': len(self._frames), 'arm_poses': len(self._poses),
                      'adapted_model': self.adapted, 'reason': self.reason,
                      'run_dir': str(self._run_dir or '')}
            state = self.state
        level = ERROR if state == 'failed' else WARN if state in ('sweeping',) else OK
        self.diagnostics.publish(level, f'{state}: {self.reason}' if self.reason else state, values)

    def destroy_node(self) -> None:
        with self._lock:
            child, self._child = self._child, None
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(AdaptNode, NODE_NAME, args)


if __name__ == '__main__':
    sys.exit(main())
