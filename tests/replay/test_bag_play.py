"""``bag play`` into live subscribers (spacing and content), and ``bag record`` of what is played
(closed cleanly on SIGTERM; a SIGKILLed recorder leaves a bag reported as truncated)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from echoposed_msgs.msg import EchoPose
from rclpy.qos import HistoryPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image
from test_bag_files import PERIOD, make_bag, truth_poses

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'nodes'))
from ros_harness import Graph, wait_for

from echoposed_ros.bag import BagError
from echoposed_ros.bag.player import play_bag
from echoposed_ros.bag.reader import read_bag

# Retries: only the tests that start several processes get one (flaky(reruns=1)): such processes
# find each other by DDS discovery, whose timing a busy 2-core machine stretches. Without retries
# these tests failed about 1 run in 5 until stop-time defects were fixed (a lost target answer, a
# duplicate node name, a take during shutdown, a middleware teardown hang); 7 of 7 runs passed after.
# The deterministic tests get no retry.

ECHOPOSED = Path(sys.executable).with_name('echoposed')
N = 30


@pytest.fixture
def graph():
    g = Graph()
    try:
        yield g
    finally:
        g.shutdown()


@pytest.fixture(scope='module')
def tiny_bag(tmp_path_factory):
    return make_bag(tmp_path_factory.mktemp('play') / 'tiny', n=N, poses=False, extra=False)


def _listen(graph):
    got = {'image': [], 'truth': []}
    sub = graph.node('listener')
    # Both histories hold the whole bag (depth >= N): a reader that keeps only the last 10 loses
    # messages, reliable or not, whenever a loaded machine stalls the executor for 10 messages
    # (CI lost 16 of 30 true poses at rate 3 that way).
    best_effort = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=N + 70,
                             reliability=qos_profile_sensor_data.reliability)  # as the pose node subscribes
    reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=N + 70)
    sub.create_subscription(Image, 'probe/image', lambda m: got['image'].append((time.monotonic(), m)), best_effort)
    sub.create_subscription(EchoPose, 'probe/true_pose', lambda m: got['truth'].append((time.monotonic(), m)),
                            reliable)
    return got


class _TimedPublishers:
    """Wraps ``node.create_publisher`` so every publish is timed (the player's own schedule,
    free of the subscriber's scheduling)."""

    def __init__(self, node):
        self.times: list[float] = []
        create = node.create_publisher
        node.create_publisher = lambda *args, **kwargs: self._Timed(create(*args, **kwargs), self.times)

    class _Timed:
        def __init__(self, pub, times):
            self._pub, self._times = pub, times

        def publish(self, msg):
            self._times.append(time.monotonic())
            self._pub.publish(msg)

        def get_subscription_count(self):
            return self._pub.get_subscription_count()


@pytest.mark.parametrize('rate', [1.0, 3.0])
def test_play_republishes_content_with_recorded_spacing(graph, tiny_bag, rate):
    got = _listen(graph)
    player = graph.node('player')
    timed = _TimedPublishers(player)
    counts = play_bag(player, tiny_bag, rate=rate, wait_s=5.0)
    assert counts == {'/probe/image': N, '/probe/true_pose': N}
    assert wait_for(lambda: len(got['image']) == N and len(got['truth']) == N, timeout=10), \
        ([int(m.data[0]) for _, m in got['image']], len(got['truth']))
    values = [int(m.data[0]) for _, m in got['image']]
    assert values == list(range(N))  # every image, in order, as recorded
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in got['truth']]
    assert np.diff(stamps).tolist() == [PERIOD] * (N - 1)  # header stamps stay as recorded
    orbit, _ = truth_poses(N)
    q = got['truth'][7][1].orbit
    from scipy.spatial.transform import Rotation
    assert np.allclose(Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(), orbit[7], atol=1e-9)
    # Spacing, on the player's side (the image and its true pose share a bag time; images are
    # every other publish). A stalled player catches up, never runs ahead: the span is at least
    # the recorded one over the rate. The upper bound is loose: a live process on a shared
    # machine stalls (0.65 s once, and a burst of catch-up publishes then spoils any median);
    # the exact schedule, stalls included, is checked on a fake clock below.
    t = np.array(timed.times[::2])
    assert len(t) == N
    expected = (N - 1) * PERIOD * 1e-9 / rate
    assert expected - 0.002 <= t[-1] - t[0] <= expected + 1.0, (t[-1] - t[0], expected)


class _FakeTime:
    """Stands in for the player's ``time``: sleeping advances the clock, nothing else does."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, dt: float) -> None:
        self.now += max(0.0, dt)


class _FakeNode:
    """Publishers that record the fake time of each publish; publish number ``stall_at`` blocks
    for ``stall_s`` (a stalled process)."""

    def __init__(self, clock: _FakeTime, stall_at: int = 0, stall_s: float = 0.0) -> None:
        self.clock, self.times, self.stall_at, self.stall_s = clock, [], stall_at, stall_s

    def create_publisher(self, msg_type, topic, qos):
        return SimpleNamespace(publish=self._publish, get_subscription_count=lambda: 1)

    def _publish(self, msg) -> None:
        self.times.append(self.clock.now)
        if len(self.times) == self.stall_at:
            self.clock.now += self.stall_s

    def get_clock(self):
        return SimpleNamespace(now=lambda: SimpleNamespace(nanoseconds=int(self.clock.now * 1e9)))


@pytest.mark.parametrize('rate', [1.0, 3.0])
@pytest.mark.parametrize('stall_at, stall_s', [(0, 0.0), (9, 0.2)])
def test_play_schedule_on_a_fake_clock_is_bag_time_over_rate_and_catches_up_after_a_stall(
        tiny_bag, monkeypatch, rate, stall_at, stall_s):
    import echoposed_ros.bag.player as player
    clock = _FakeTime()
    monkeypatch.setattr(player, 'time', clock)
    node = _FakeNode(clock, stall_at, stall_s)
    assert play_bag(node, tiny_bag, rate=rate) == {'/probe/image': N, '/probe/true_pose': N}
    t = np.array(node.times) - node.times[0]
    # image and true pose of frame k share bag time k * PERIOD: publishes 2k and 2k + 1
    on_time = np.repeat(np.arange(N) * PERIOD * 1e-9 / rate, 2)
    if stall_at:  # after the stall: at once until back on schedule, then on it; never ahead
        resumed = t[stall_at - 1] + stall_s
        on_time[stall_at:] = np.maximum(on_time[stall_at:], resumed)
    np.testing.assert_allclose(t, on_time, atol=1e-6)


def test_restamp_moves_stamps_to_now_and_keeps_their_spacing(graph, tiny_bag):
    got = _listen(graph)
    player = graph.node('player')
    now = player.get_clock().now().nanoseconds
    play_bag(player, tiny_bag, rate=3.0, wait_s=5.0, restamp=True, topics=['probe/true_pose'])
    assert wait_for(lambda: len(got['truth']) == N, timeout=5)
    assert not got['image']  # only the chosen topic was played
    stamps = np.array([m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in got['truth']])
    assert np.abs(np.diff(stamps) - PERIOD / 3.0).max() <= 1  # spacing follows the playback (rate 3)
    assert now - 1_000_000_000 < stamps[0] < now + 10_000_000_000
    assert got['truth'][0][1].header.frame_id == 'heart'  # the rest of the message is untouched


def test_bad_rate_is_refused(graph, tiny_bag):
    with pytest.raises(BagError, match='rate = 0'):
        play_bag(graph.node('player'), tiny_bag, rate=0.0)


def _record_while_playing(graph, tiny_bag, out):
    recorder = subprocess.Popen([str(ECHOPOSED), 'bag', 'record', str(out), 'probe/image', 'probe/true_pose'],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    try:
        player = graph.node('player')
        # play_bag waits (up to wait_s) until the recorder has found and subscribed both topics
        counts = play_bag(player, tiny_bag, rate=2.0, wait_s=15.0)
        assert counts == {'/probe/image': N, '/probe/true_pose': N}
        time.sleep(1.5)  # past the recorder's flush period
    except BaseException:
        recorder.kill()
        raise
    return recorder


def assert_played_in_order(firsts: list[int], last: int) -> None:
    """The frames (their first pixel: the frame index) are one run in play order ending at ``last``,
    less at most 3 at the start: play_bag starts once the player sees the recorder's subscription,
    and the first best-effort frames can come before the recorder's side has matched the player
    (seen once in about 30 runs without retries)."""
    assert firsts and firsts[0] <= 3 and firsts == list(range(firsts[0], last + 1)), firsts


@pytest.mark.slow
# retry: a player here and a recorder process must discover each other before play starts
@pytest.mark.flaky(reruns=1)
def test_recorder_records_what_is_played_and_closes_on_sigterm(graph, tiny_bag, tmp_path):
    out = tmp_path / 'rerecorded'
    recorder = _record_while_playing(graph, tiny_bag, out)
    os.killpg(recorder.pid, signal.SIGTERM)
    output, _ = recorder.communicate(timeout=20)
    assert recorder.returncode == 0, output
    c = read_bag(out)
    original = read_bag(tiny_bag)
    firsts = [int(im[0, 0]) for im in c.images.images]
    assert_played_in_order(firsts, N - 1)
    assert np.array_equal(c.images.stamps, original.images.stamps[firsts[0]:]), output
    truth = np.isin(original.truth.stamps, c.truth.stamps)
    assert truth[-(N - 3):].all() and np.allclose(c.truth.orbit, original.truth.orbit[truth])


@pytest.mark.slow
# retry: a player here and a recorder process must discover each other before play starts
@pytest.mark.flaky(reruns=1)
def test_killed_recorder_leaves_a_bag_reported_as_truncated(graph, tiny_bag, tmp_path):
    out = tmp_path / 'killed'
    recorder = _record_while_playing(graph, tiny_bag, out)
    os.killpg(recorder.pid, signal.SIGKILL)
    recorder.communicate(timeout=20)
    assert (out / 'killed.mcap').stat().st_size > 10_000  # the flushed chunks are on disk
    with pytest.raises(BagError, match=f'{out}: truncated: killed.mcap'):
        read_bag(out)
    from echoposed_ros.bag.salvage import salvage
    counts = salvage(out, tmp_path / 'salvaged')  # what was flushed before the kill
    assert counts['/probe/image'] >= N // 2, counts
    kept = [int(im[0, 0]) for im in read_bag(tmp_path / 'salvaged').images.images]
    assert len(kept) == counts['/probe/image']
    assert_played_in_order(kept, kept[-1])


def test_bag_type_hashes_are_the_ones_ros_announces(graph):
    """The RIHS01 hashes written into bags equal those of the running ROS types (ros2 bag play checks)."""
    from echoposed_msgs.msg import GuidanceStatus, ProbeTwist
    from rclpy.serialization import serialize_message

    from echoposed_ros.bag.typestore import typestore

    node = graph.node('hashes')
    for cls, name in ((EchoPose, 'echoposed_msgs/msg/EchoPose'), (GuidanceStatus, 'echoposed_msgs/msg/GuidanceStatus'),
                      (ProbeTwist, 'echoposed_msgs/msg/ProbeTwist'), (Image, 'sensor_msgs/msg/Image')):
        topic = '/hash_' + name.split('/')[-1]
        node.create_publisher(cls, topic, 10)
        assert wait_for(lambda topic=topic: bool(node.get_publishers_info_by_topic(topic)), timeout=5)
        assert str(node.get_publishers_info_by_topic(topic)[0].topic_type_hash) == typestore().hash_rihs01(name)
    # and rclpy and the typestore read each other's bytes (padding bytes may differ)
    from rclpy.serialization import deserialize_message
    msg = EchoPose(uncertainty=0.25, inference_time=0.004)
    msg.header.frame_id = 'heart'
    msg.orbit.w = 1.0
    msg.probe.w = 1.0
    store = typestore()
    ours = store.deserialize_cdr(serialize_message(msg), 'echoposed_msgs/msg/EchoPose')
    assert ours.header.frame_id == 'heart' and ours.uncertainty == 0.25 and ours.orbit.w == 1.0
    assert deserialize_message(bytes(store.serialize_cdr(ours, 'echoposed_msgs/msg/EchoPose')), EchoPose) == msg
