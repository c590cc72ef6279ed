"""Simulation node ``echoposed_sim``: a robot arm (or kinematic probe) over a beating heart.

Loads a volume file or generates a phantom patient, holds the probe in a PyBullet world and, at
``frame_rate``, applies the held command, steps the world and publishes what the probe sees.

Publishes ``probe/image`` (``sensor_msgs/Image`` mono8, frame ``probe``, sensor-data QoS) and
``probe/image/compressed`` (``sensor_msgs/CompressedImage``, PNG, sensor-data QoS; encoded only
while someone subscribes), ``probe/true_pose`` (``EchoPose``: ground truth in frame ``heart``,
sigma^2 = 0), ``probe/pose`` (``geometry_msgs/PoseStamped``: sector apex in frame ``heart``, metres),
``joint_states`` and ``/diagnostics``; for RViz, ``robot_description`` (``std_msgs/String``: the
URDF of the arm and probe, or of the probe alone; transient local, depth 1), ``/tf`` at each tick
(``world -> heart``, ``world -> <link>``, ``probe_tip -> probe``, ``heart -> probe_true``; see
:mod:`echoposed_ros.nodes.tf`; only where ``tf2_msgs`` is installed) and ``sim/markers``
(``visualization_msgs/MarkerArray`` in ``world``: orbit sphere, centre, the last view asked for
through ``sim/standard_view`` as the target; transient local, and again every second).
Subscribes ``probe/cmd`` (``ProbeTwist``) and ``probe/cmd_twist`` (``geometry_msgs/TwistStamped``,
frame ``probe`` or ``heart``): one of the two, by ``command_source``. Services:
``sim/reset`` (``std_srvs/Trigger``: next random start pose), ``sim/render_view``
(``RenderView``), ``sim/standard_view`` (``StandardView``: named views of the loaded phantom).

A command holding NaN or inf is dropped and reported; when commands stop for longer than
``command_timeout`` the probe holds still. A missing or invalid volume stops the node with one
clear line (exit code 2).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from echoposed_msgs.msg import EchoPose, ProbeTwist
from echoposed_msgs.srv import RenderView, StandardView
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from echoposed_sim.sampling import sample_poses
from echoposed_sim.session import SimError, SimSession
from echoposed_sim.volume import Volume
from echoposed_sim.world import make_world
from echoposed_sim.world.robot import IIWA, rviz_description

from ..config.sim import PARAMS, SimNodeConfig
from ..errors import EchoposedError
from ..geometry import probe_frame
from .convert import (
    array_to_compressed_msg,
    array_to_image_msg,
    echopose_msg,
    matrix_to_quaternion_msg,
    quaternion_msg_to_matrix,
)
from .diagnostics import OK, WARN, DiagnosticsPublisher
from .errors import NodeError
from .markers import scene_markers
from .params import declare_all, watch_parameters
from .process import run_node
from .tf import WORLD, sim_transforms, tf_message_type

# What robot_state_publisher gives robot_description: a late subscriber (RViz) still gets it.
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)

__all__ = ['SimNode', 'load_sim_volume', 'main']


def load_sim_volume(config: SimNodeConfig) -> Volume:
    """The configured volume file, or the phantom patient of ``phantom_seed``."""
    if config.volume:
        from echoposed_sim.volume_io import load_volume
        volume = load_volume(Path(config.volume))
    else:
        from echoposed_sim.phantom import PhantomCache, load_style
        style = load_style(config.style) if config.style else None
        cache = PhantomCache(config.cache_dir, max_in_memory=1, style=style, frames=config.phantom_frames)
        volume = cache.get(config.phantom_seed)
    if config.orbit_radius_mm is not None:
        from dataclasses import replace
        volume = replace(volume, radius=config.orbit_radius_mm)
    return volume


class SimNode(Node):
    """Thin shell: parameters -> :class:`SimNodeConfig` -> :class:`SimSession` -> messages."""

    def __init__(self, volume: Volume | None = None, **kwargs: Any) -> None:
        super().__init__('echoposed_sim', **kwargs)
        self.config = SimNodeConfig.from_parameters(declare_all(self, PARAMS))
        self.volume = volume if volume is not None else load_sim_volume(self.config)
        world = make_world(self.volume, robot=self.config.robot)
        self.session = SimSession(self.volume, world, self.config.sector,
                                  cardiac_motion=self.config.cardiac_motion,
                                  command_timeout_s=self.config.command_timeout, clock=time.monotonic)
        self._rng = np.random.default_rng(self.config.start_seed)
        self._reset_to_random_start()
        self.image_pub = self.create_publisher(Image, 'probe/image', qos_profile_sensor_data)
        self.true_pub = self.create_publisher(EchoPose, 'probe/true_pose', 10)
        self.pose_pub = self.create_publisher(PoseStamped, 'probe/pose', 10)
        self.joint_pub = self.create_publisher(JointState, 'joint_states', 10)
        self.compressed_pub = self.create_publisher(CompressedImage, 'probe/image/compressed', qos_profile_sensor_data)
        self.description_pub = self.create_publisher(String, 'robot_description', LATCHED)
        self.markers_pub = self.create_publisher(MarkerArray, 'sim/markers', LATCHED)
        self._tf_type = tf_message_type()
        self.tf_pub = self.create_publisher(self._tf_type, '/tf', 100) if self._tf_type is not None else None
        if self.tf_pub is None:
            self.get_logger().info('/tf is not published: tf2_msgs is not installed (a ROS 2 install has it)')
        self.description_pub.publish(String(data=rviz_description(world.robot_description())))
        self.target: tuple[str, Any] | None = None   # (name, StandardView) last asked for
        if self.config.command_source == 'body':
            self.create_subscription(ProbeTwist, 'probe/cmd', self._on_probe_twist, 10)
        else:
            self.create_subscription(TwistStamped, 'probe/cmd_twist', self._on_cartesian_twist, 10)
        self.create_service(Trigger, 'sim/reset', self._on_reset)
        self.create_service(RenderView, 'sim/render_view', self._on_render_view)
        self.create_service(StandardView, 'sim/standard_view', self._on_standard_view)
        self.diagnostics = DiagnosticsPublisher(self, 'echoposed_sim: world', self.volume.name)
        self.dropped_commands = 0
        self._last_drop = ''
        self._ticks = 0
        self._tick_time_s = 0.0
        self._window_start = time.monotonic()
        self.create_timer(1.0 / self.config.frame_rate, self._tick)
        self.create_timer(1.0, self._publish_diagnostics)
        self.create_timer(1.0, self._publish_markers)
        self._publish_markers()
        watch_parameters(self, PARAMS, SimNodeConfig.from_parameters, self._set_config)
        self.get_logger().info(f'{self.volume.name}: {self.volume.data.shape[0]} frames, '
                               f'{"arm" if self.config.robot else "kinematic"}, '
                               f'{self.config.frame_rate:g} Hz')

    def _set_config(self, config: SimNodeConfig) -> None:
        """Parameters changed while running (only the writable ones can): the heartbeat, the command
        timeout, the range of the next random start."""
        self.config = config
        self.session.cardiac_motion = config.cardiac_motion
        self.session.command_timeout_s = config.command_timeout

    def _reset_to_random_start(self) -> None:
        orbits, probes = sample_poses(self._rng, 1, self.volume.base_orbit, self.volume.base_probe,
                                      orbit_max=self.config.start_orbit_max, tilt_max=self.config.start_tilt_max)
        self.session.reset(orbits[0], probes[0])

    # -- commands ---------------------------------------------------------------------------------

    def _drop(self, why: str) -> None:
        self.dropped_commands += 1
        self._last_drop = why
        self.get_logger().warning(f'command dropped: {why}', throttle_duration_sec=1.0)

    def _on_probe_twist(self, msg: ProbeTwist) -> None:
        try:
            self.session.command_body_twist([msg.orbit.x, msg.orbit.y, msg.orbit.z],
                                            [msg.probe.x, msg.probe.y, msg.probe.z])
        except SimError as exc:
            self._drop(f'probe/cmd: {exc}')

    def _on_cartesian_twist(self, msg: TwistStamped) -> None:
        frame = {'probe': 'probe', '': 'probe', 'heart': 'world'}.get(msg.header.frame_id)
        if frame is None:
            self._drop(f"probe/cmd_twist: frame_id {msg.header.frame_id!r}; expected 'probe' or 'heart'")
            return
        t = msg.twist
        try:
            self.session.command_cartesian_twist([t.linear.x, t.linear.y, t.linear.z],
                                                 [t.angular.x, t.angular.y, t.angular.z], frame)
        except SimError as exc:
            self._drop(f'probe/cmd_twist: {exc}')

    # -- the loop ---------------------------------------------------------------------------------

    def _tick(self) -> None:
        started = time.perf_counter()
        frame = self.session.tick(1.0 / self.config.frame_rate)
        stamp = self.get_clock().now().to_msg()
        header = Header(stamp=stamp, frame_id='probe')
        self.image_pub.publish(array_to_image_msg(frame.image, header))
        if self.compressed_pub.get_subscription_count():
            self.compressed_pub.publish(array_to_compressed_msg(frame.image, header))
        self.true_pub.publish(echopose_msg(Header(stamp=stamp, frame_id='heart'), frame.pose.orbit,
                                           frame.pose.probe))
        R, apex = probe_frame(frame.pose.orbit, frame.pose.probe, self.volume.centre, self.volume.radius)
        pose = PoseStamped(header=Header(stamp=stamp, frame_id='heart'))
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(c) * 1e-3 for c in apex)
        pose.pose.orientation = matrix_to_quaternion_msg(R)
        self.pose_pub.publish(pose)
        if self.tf_pub is not None:
            self.tf_pub.publish(self._tf_type(transforms=self.transforms(stamp, R, apex)))
        if frame.status.joint_names:
            self.joint_pub.publish(JointState(header=Header(stamp=stamp), name=list(frame.status.joint_names),
                                              position=[float(q) for q in frame.status.joint_positions]))
        self._ticks += 1
        self._tick_time_s += time.perf_counter() - started
        self._last_status = frame.status

    # -- RViz -------------------------------------------------------------------------------------

    def transforms(self, stamp: Any, R: np.ndarray, apex_mm: np.ndarray) -> list:
        """This tick's TF (``geometry_msgs/TransformStamped``): the world's links now, the true probe
        frame ``(R (3, 3), apex (3,) mm)`` in V."""
        world = self.session.world
        return sim_transforms(world.heart.R_WV, world.heart.t_WV, world.link_poses(), IIWA.tip_link, R, apex_mm,
                              stamp)

    def markers(self) -> MarkerArray:
        """Orbit sphere, centre and target (the last standard view asked for), in ``world`` (m)."""
        heart = self.session.world.heart
        target = None
        if self.target is not None:
            name, view = self.target
            R, apex = probe_frame(view.orbit, view.probe, self.volume.centre, self.volume.radius)
            target = (name, heart.rotation_to_scene(R), heart.point_to_scene(apex))
        return scene_markers(WORLD, self.get_clock().now().to_msg(), heart.point_to_scene(self.volume.centre),
                             self.volume.radius / 1e3, target)

    def _publish_markers(self) -> None:
        self.markers_pub.publish(self.markers())

    def _publish_diagnostics(self) -> None:
        elapsed = max(time.monotonic() - self._window_start, 1e-9)
        status = getattr(self, '_last_status', None)
        values = {
            'rate_hz': self._ticks / elapsed,
            'tick_ms': 1e3 * self._tick_time_s / self._ticks if self._ticks else float('nan'),
            'dropped_commands': self.dropped_commands,
            'last_dropped': self._last_drop,
            'command_age_s': self.session.command_age_s(),
            'reachable': status.reachable if status else True,
            'world': status.message if status else '',
            'compressed_subscribers': self.compressed_pub.get_subscription_count(),
            'tf': 'published' if self.tf_pub is not None else 'not published: tf2_msgs is not installed',
        }
        problems = [m for m in (status.message if status else '', ) if m]
        if self._last_drop:
            problems.append(f'{self.dropped_commands} command(s) dropped: {self._last_drop}')
        level = WARN if problems else OK
        self.diagnostics.publish(level, '; '.join(problems) or f'{values["rate_hz"]:.1f} Hz', values)
        self._last_drop = ''
        self._ticks = 0
        self._tick_time_s = 0.0
        self._window_start = time.monotonic()

    # -- services ---------------------------------------------------------------------------------

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._reset_to_random_start()
        response.success, response.message = True, 'probe moved to the next random start pose'
        return response

    def _on_render_view(self, request: RenderView.Request, response: RenderView.Response) -> RenderView.Response:
        try:
            orbit = quaternion_msg_to_matrix(request.orbit, 'RenderView.orbit')
            probe = quaternion_msg_to_matrix(request.probe, 'RenderView.probe')
            if not np.isfinite(request.cardiac_phase):
                raise NodeError(f'RenderView.cardiac_phase = {request.cardiac_phase}; expected a finite phase')
            image = self.session.render(orbit, probe, float(request.cardiac_phase) % 1.0)
        except EchoposedError as exc:
            response.success, response.message = False, str(exc)
            return response
        stamp = self.get_clock().now().to_msg()
        response.success, response.image = True, array_to_image_msg(image, Header(stamp=stamp, frame_id='probe'))
        return response

    def _on_standard_view(self, request: StandardView.Request,
                          response: StandardView.Response) -> StandardView.Response:
        name = request.view.strip().upper()
        view = self.volume.views.get(name)
        if view is None:
            known = ', '.join(sorted(self.volume.views)) or 'none'
            response.success = False
            response.message = f'{self.volume.name} has no standard view {request.view!r} (known: {known})'
            return response
        stamp = self.get_clock().now().to_msg()
        image = self.session.render(view.orbit, view.probe, float(request.cardiac_phase) % 1.0)
        response.success, response.message = True, f'{name} of {self.volume.name}'
        if self.target is None or self.target[0] != name:
            self.target = (name, view)
            self._publish_markers()
        response.pose = echopose_msg(Header(stamp=stamp, frame_id='heart'), view.orbit, view.probe)
        response.image = array_to_image_msg(image, Header(stamp=stamp, frame_id='probe'))
        return response


def main(args: list[str] | None = None) -> int:
    return run_node(SimNode, 'echoposed_sim', args, cleanup=lambda node: node.session.world.close())


if __name__ == '__main__':
    sys.exit(main())
