"""Policy core: config validation, proportional twist (gain, deadband, limits), state machine safety."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from echoposed_ros.geometry import Pose, effective_error, identity, matrix_to_quat_xyzw, rot_x, rot_y, rot_z, so3_exp
from echoposed_ros.geometry import step as geometry_step
from echoposed_ros.policy import (
    BodyTwist,
    ControllerConfig,
    GuidanceMemory,
    GuidanceState,
    PolicyError,
    PoseSample,
    TargetKind,
    clip_norm,
    control_step,
    describe_fields,
    make_target,
    pose_sample,
    proportional_twist,
    tracking_error,
)
from echoposed_ros.policy.coasting import Anchor, advance, agrees

CFG = ControllerConfig()
TARGET = make_target((rot_x(0.2), rot_z(1.0) @ rot_y(0.1)), 'pose', TargetKind.POSE)


def sample(pose=None, uncertainty=0.0, received=0.0, seq=0, frame=''):
    return PoseSample(identity() if pose is None else Pose(*pose), uncertainty, received, seq, frame)


FRESH = GuidanceMemory()


def step(s, now=0.0, memory=FRESH, active=True, target=TARGET, config=CFG):
    return control_step(memory, now=now, active=active, target=target, sample=s, config=config)


def assert_zero(out):
    assert not np.any(out.twist.orbit) and not np.any(out.twist.probe)
    assert not np.any(out.cartesian.v) and not np.any(out.cartesian.omega)


# --- config -------------------------------------------------------------------------------------

@pytest.mark.parametrize(('field', 'value', 'words'), [
    ('gain', 0.0, 'gain: expected > 0'),
    ('max_probe_speed', -1.0, 'max_probe_speed'),
    ('stale_timeout', float('nan'), 'stale_timeout: expected a finite number'),
    ('converge_frames', 0, 'converge_frames: expected >= 1'),
    ('converge_frames', 2.5, 'integer'),
    ('release_tolerance', 0.01, 'release_tolerance: expected >= converge_tolerance'),
    ('deadband', 0.03, 'sqrt(5) * deadband < converge_tolerance'),
    ('uncertainty_threshold', 'high', 'uncertainty_threshold'),
    ('coast_time', -0.1, 'coast_time: expected >= 0 (s)'),
])
def test_config_rejects_bad_values_naming_the_field(field, value, words):
    with pytest.raises(PolicyError) as info:
        ControllerConfig(**{field: value})
    assert words in str(info.value)


def test_config_is_frozen_and_every_field_has_a_unit_and_description():
    with pytest.raises(AttributeError):
        CFG.gain = 2.0  # type: ignore[misc]
    for name, (default, unit, description) in describe_fields().items():
        assert unit and len(description) > 15, name
        assert getattr(CFG, name) == default
    assert ControllerConfig.from_mapping({'gain': 3}).gain == 3.0
    with pytest.raises(PolicyError, match='unknown parameter'):
        ControllerConfig.from_mapping({'gains': 3})


# --- proportional twist -------------------------------------------------------------------------

def test_twist_is_gain_times_body_log_error():
    cfg = ControllerConfig(gain=0.5, max_orbit_speed=10.0, max_probe_speed=10.0)
    P = (rot_x(0.1), rot_z(0.3))
    T = (rot_x(0.1) @ so3_exp([0.0, 0.05, 0.0]), rot_z(0.3) @ so3_exp([0.1, -0.2, 0.3]))
    err = tracking_error(P, T)
    tw = proportional_twist(err, cfg)
    np.testing.assert_allclose(tw.orbit, [0.0, 0.025, 0.0], atol=1e-12)
    np.testing.assert_allclose(tw.probe, 0.5 * np.array([0.1, -0.2, 0.3]), atol=1e-12)
    assert err.orbit_angle == pytest.approx(0.05)


def test_body_error_is_invariant_under_a_common_left_factor():
    rng = np.random.default_rng(0)
    P = (so3_exp(rng.normal(size=3)), so3_exp(rng.normal(size=3)))
    T = (so3_exp(rng.normal(size=3)), so3_exp(rng.normal(size=3)))
    A = (so3_exp(rng.normal(size=3)), so3_exp(rng.normal(size=3)))
    e1 = tracking_error(P, T)
    e2 = tracking_error((A[0] @ P[0], A[1] @ P[1]), (A[0] @ T[0], A[1] @ T[1]))
    np.testing.assert_allclose(e1.orbit, e2.orbit, atol=1e-12)
    np.testing.assert_allclose(e1.probe, e2.probe, atol=1e-12)


def test_deadband_zeroes_each_factor_on_its_own():
    cfg = ControllerConfig(deadband=0.01, converge_tolerance=0.05)
    err = tracking_error((np.eye(3), np.eye(3)), (so3_exp([0.005, 0, 0]), so3_exp([0, 0, 0.3])))
    tw = proportional_twist(err, cfg)
    assert not np.any(tw.orbit)
    assert np.linalg.norm(tw.probe) > 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3), st.one_of(st.just(0.0), st.floats(1e-6, 10.0)))
def test_clip_norm_never_exceeds_the_limit_and_keeps_direction(w, limit):
    w = np.array(w)
    out = clip_norm(w, limit)
    assert np.linalg.norm(out) <= limit * (1 + 1e-12) or np.allclose(out, w)
    assert np.linalg.norm(out) <= max(limit, np.linalg.norm(w)) * (1 + 1e-12)
    if np.linalg.norm(out) > 1e-9 and np.linalg.norm(w) > 0:
        assert np.dot(out, w) / (np.linalg.norm(out) * np.linalg.norm(w)) == pytest.approx(1.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=6, max_size=6), st.floats(0.1, 50.0))
def test_commanded_speed_never_exceeds_the_limit_per_factor(v, gain):
    cfg = ControllerConfig(gain=gain, max_orbit_speed=0.2, max_probe_speed=0.4)
    err = tracking_error((np.eye(3), np.eye(3)), (so3_exp(v[:3]), so3_exp(v[3:])))
    tw = proportional_twist(err, cfg)
    assert np.linalg.norm(tw.orbit) <= 0.2 * (1 + 1e-12)
    assert np.linalg.norm(tw.probe) <= 0.4 * (1 + 1e-12)


def test_clip_norm_rejects_nan():
    with pytest.raises(PolicyError, match='finite'):
        clip_norm([np.nan, 0, 0], 1.0)


# --- state machine ------------------------------------------------------------------------------

def test_guiding_moves_towards_the_target():
    memory, out = step(sample())
    assert out.state == GuidanceState.GUIDING
    assert np.dot(out.twist.probe, out.error.probe) > 0 and np.dot(out.twist.orbit, out.error.orbit) > 0
    assert out.cue and out.cue != 'hold still'


def test_uncertainty_above_threshold_holds_with_zero_twist():
    _, out = step(sample(uncertainty=CFG.uncertainty_threshold * 1.01))
    assert out.state == GuidanceState.HOLD_UNCERTAIN
    assert_zero(out)
    _, out = step(sample(uncertainty=float('nan')))
    assert out.state == GuidanceState.HOLD_UNCERTAIN
    assert_zero(out)
    _, out = step(sample(uncertainty=CFG.uncertainty_threshold * 0.99))
    assert out.state == GuidanceState.GUIDING


COAST = ControllerConfig(coast_time=0.5, coast_after_frames=1)   # the coast's mechanics; the streak rule below
UNSURE = COAST.uncertainty_threshold * 3


def _reckoned(pose, commands):
    """Naive odometry: ``pose`` moved by each (body twist, seconds) in turn."""
    for twist, dt in commands:
        pose = geometry_step(pose, twist.orbit, twist.probe, dt)
    return pose


def test_odometry_undoes_a_command_by_its_negation_and_agrees_only_near_the_reckoning():
    start = Pose(rot_x(0.3) @ rot_y(-0.2), rot_z(1.1))
    w = BodyTwist(np.array([0.1, -0.2, 0.05]), np.array([0.0, 0.3, -0.4]))
    a = Anchor(start, True, w, 1.0, 1.0)       # an un-gauge-fixed mean: R <- R exp(omega dt), exact
    moved = advance(a, 1.7)
    assert moved.at == 1.7 and effective_error(moved.pose, start) > 0.1
    assert advance(moved, 1.7) == moved        # no time, no motion
    back = advance(replace(moved, command=BodyTwist(-w.orbit, -w.probe)), 2.4)
    assert effective_error(back.pose, start) < 1e-9
    assert agrees(moved, moved.pose, 0.1)
    assert not agrees(moved, Pose(moved.pose.orbit @ rot_x(0.2), moved.pose.probe), 0.1)
    canonical = advance(Anchor(start, False, w, 1.0, 1.0), 1.7)   # canonical poses stay in canonical gauge
    expected = geometry_step(start, w.orbit, w.probe, 0.7)
    np.testing.assert_allclose(canonical.pose.orbit, expected.orbit, atol=1e-12)
    np.testing.assert_allclose(canonical.pose.probe, expected.probe, atol=1e-12)


def test_an_unsure_pose_soon_after_a_confident_one_coasts_by_odometry_then_holds():
    P = (rot_x(0.1), rot_z(0.2))
    memory, guiding = step(sample(P, received=1.0), now=1.0, config=COAST)
    assert guiding.state == GuidanceState.GUIDING and np.linalg.norm(guiding.twist.probe) > 0
    commands, last = [], (guiding.twist, 1.0)
    for t in (1.1, 1.3, 1.5):   # up to coast_time after the confident frame: steer from where the commands put it
        memory, out = step(sample((rot_x(0.5), rot_z(2.0)), uncertainty=UNSURE, received=t, seq=1), now=t,
                           memory=memory, config=COAST)
        assert out.state == GuidanceState.COASTING and out.uncertainty == UNSURE
        commands.append((last[0], t - last[1]))
        expected = proportional_twist(tracking_error(_reckoned(P, commands), TARGET.pose), COAST)
        np.testing.assert_allclose(out.twist.orbit, expected.orbit, atol=1e-9)
        np.testing.assert_allclose(out.twist.probe, expected.probe, atol=1e-9)
        last = (out.twist, t)
        assert 'uncertain' in out.cue and 'odometry' in out.cue and out.error is not None
    # the live (unsure) estimate is reported, never steered by
    assert out.error.effective == pytest.approx(tracking_error((rot_x(0.5), rot_z(2.0)), TARGET.pose).effective)
    memory, out = step(sample(uncertainty=UNSURE, received=1.51, seq=2), now=1.51, memory=memory, config=COAST)
    assert out.state == GuidanceState.HOLD_UNCERTAIN
    assert_zero(out)
    # the hold forgot the reckoning: no second coast without a confident frame in between
    memory, out = step(sample(uncertainty=UNSURE, received=1.52, seq=3), now=1.52, memory=memory, config=COAST)
    assert out.state == GuidanceState.HOLD_UNCERTAIN
    memory, out = step(sample(received=1.6, seq=4), now=1.6, memory=memory, config=COAST)
    assert out.state == GuidanceState.GUIDING
    _, out = step(sample(uncertainty=UNSURE, received=1.7, seq=5), now=1.7, memory=memory, config=COAST)
    assert out.state == GuidanceState.COASTING


def test_coasting_crosses_a_band_of_unsure_views_that_holding_stops_at():
    """A probe moved exactly by its commands, estimated exactly except in a band of views half way to the
    target where the ensemble is unsure: coasting by odometry carries it across and it converges; without
    coasting it stops at the band's edge (and with recovery, returns and stops there again)."""
    start, dt = (rot_x(0.4), rot_z(1.6)), 0.05

    def run(config):
        g, memory = start, GuidanceMemory()
        for k in range(600):
            gap = tracking_error(g, TARGET.pose).effective
            unsure = 0.35 < gap < 0.55
            memory, out = step(sample(g, uncertainty=UNSURE if unsure else 0.0, received=k * dt, seq=k),
                               now=k * dt, memory=memory, config=config)
            if out.state == GuidanceState.CONVERGED:
                break
            g = geometry_step(g, out.twist.orbit, out.twist.probe, dt)
        return out.state, tracking_error(g, TARGET.pose).effective

    first = tracking_error(start, TARGET.pose).effective
    assert first > 0.55
    state, gap = run(ControllerConfig(coast_time=1.5, control_rate=1 / dt))
    assert state == GuidanceState.CONVERGED and gap < CFG.converge_tolerance
    state, gap = run(ControllerConfig(coast_time=0.0, control_rate=1 / dt, recover_after=1e3))
    assert state == GuidanceState.HOLD_UNCERTAIN and 0.5 < gap < first


def test_only_a_confident_streak_or_a_frame_where_odometry_says_is_coasted_on():
    cfg = ControllerConfig(coast_time=0.5, coast_after_frames=3)
    memory = GuidanceMemory()
    for seq in range(2):   # two confident frames (one seen on two ticks: frames, not ticks)
        for _ in range(2):
            memory, out = step(sample(received=1.0 + 0.1 * seq, seq=seq), now=1.0 + 0.1 * seq, memory=memory,
                               config=cfg)
    assert out.state == GuidanceState.GUIDING
    _, out = step(sample(uncertainty=UNSURE, received=1.25, seq=2), now=1.25, memory=memory, config=cfg)
    assert out.state == GuidanceState.HOLD_UNCERTAIN   # two frames: not trusted
    memory, armed = step(sample(received=1.2, seq=2), now=1.2, memory=memory, config=cfg)
    memory, out = step(sample(uncertainty=UNSURE, received=1.3, seq=3), now=1.3, memory=memory, config=cfg)
    assert out.state == GuidanceState.COASTING   # the third frame made it trusted
    # a lifted probe: unsure frames with a lone sure (garbage) frame among them, far from the reckoning
    memory, lone = step(sample((rot_x(1.0), rot_z(-2.0)), received=1.4, seq=4), now=1.4, memory=memory, config=cfg)
    assert lone.state == GuidanceState.GUIDING   # one frame's command, as without coasting
    memory, out = step(sample(uncertainty=UNSURE, received=1.5, seq=5), now=1.5, memory=memory, config=cfg)
    assert out.state == GuidanceState.HOLD_UNCERTAIN   # the lone frame ended the coast and is not trusted
    assert_zero(out)
    # the coast ends coast_time after the trusted frame ...
    memory = GuidanceMemory()
    for seq in range(3):
        memory, armed = step(sample(received=2.0 + 0.1 * seq, seq=seq), now=2.0 + 0.1 * seq, memory=memory,
                             config=cfg)
    memory, out = step(sample(uncertainty=UNSURE, received=2.69, seq=3), now=2.69, memory=memory, config=cfg)
    assert out.state == GuidanceState.COASTING
    held = step(sample(uncertainty=UNSURE, received=2.71, seq=4), now=2.71, memory=memory, config=cfg)[1]
    assert held.state == GuidanceState.HOLD_UNCERTAIN   # 0.51 s after the trusted frame
    assert_zero(held)
    # ... unless a lone confident frame lies where the odometry puts the probe: it is trusted in turn
    assert memory.anchor is not None
    there = sample(memory.anchor.pose, received=2.7, seq=4)
    memory, out = step(there, now=2.7, memory=memory, config=cfg)
    assert out.state == GuidanceState.GUIDING
    memory, out = step(sample(uncertainty=UNSURE, received=3.1, seq=5), now=3.1, memory=memory, config=cfg)
    assert out.state == GuidanceState.COASTING


def test_coast_time_counts_from_the_reception_of_the_confident_pose_not_from_the_last_tick():
    memory, out = step(sample(received=1.0), now=1.0, config=COAST)
    memory, out = step(sample(received=1.0), now=1.15, memory=memory, config=COAST)   # same pose, next tick
    assert out.state == GuidanceState.GUIDING
    _, out = step(sample(uncertainty=UNSURE, received=1.55, seq=1), now=1.55, memory=memory, config=COAST)
    assert out.state == GuidanceState.HOLD_UNCERTAIN   # 0.55 s after the pose, 0.4 s after the tick
    assert_zero(out)


def test_coasting_is_off_by_default_and_never_follows_convergence_a_stale_stream_or_a_stop():
    memory, _ = step(sample(received=1.0), now=1.0)
    _, out = step(sample(uncertainty=UNSURE, received=1.01, seq=1), now=1.01, memory=memory)
    assert out.state == GuidanceState.HOLD_UNCERTAIN   # coast_time 0: hold at once
    assert_zero(out)
    memory, _ = step(sample(received=1.0), now=1.0, config=COAST)
    _, out = step(sample(uncertainty=UNSURE, received=1.0, seq=1), now=1.3, memory=memory, config=COAST)
    assert out.state == GuidanceState.STALE_INPUT   # the stale check comes first
    assert_zero(out)
    _, out = step(sample(uncertainty=UNSURE, received=1.1, seq=1), now=1.1, memory=memory, config=COAST,
                  active=False)
    assert out.state == GuidanceState.STOPPED
    assert_zero(out)
    _, out = step(sample(uncertainty=float('nan'), received=1.1, seq=1), now=1.1, memory=memory, config=COAST)
    assert out.state == GuidanceState.COASTING   # NaN sigma^2 counts as unsure, like a large one
    cfg = ControllerConfig(coast_time=0.5, coast_after_frames=1, converge_frames=1)
    memory, out = step(sample(TARGET.pose, received=2.0, seq=2), now=2.0, memory=memory, config=cfg)
    assert out.state == GuidanceState.CONVERGED
    _, out = step(sample(uncertainty=UNSURE, received=2.1, seq=3), now=2.1, memory=memory, config=cfg)
    assert out.state == GuidanceState.HOLD_UNCERTAIN   # converged means zero twist: nothing to coast on
    assert_zero(out)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 0.2), st.booleans()), min_size=1, max_size=40))
def test_coasting_never_exceeds_the_speed_limits_or_coast_time(steps):
    """Any mix of sure and unsure frames: speeds stay within the limits, and a coasted command never
    comes more than coast_time after the last trusted confident frame (a streak's, or one where the
    odometry put the probe)."""
    # recover_after: long unsure spells return along the path (test_recovery.py); here only coasting moves the probe
    cfg = ControllerConfig(coast_time=0.3, max_orbit_speed=0.2, max_probe_speed=0.4, coast_after_frames=2,
                           recover_after=1e3)
    memory, now, armed_at, streak = GuidanceMemory(), 0.0, None, 0
    for seq, (dt, unsure) in enumerate(steps):
        now += dt
        pose = (rot_y(0.1 * seq), rot_z(-0.2 * seq))
        memory, out = step(sample(pose, uncertainty=UNSURE if unsure else 0.0, received=now, seq=seq), now=now,
                           memory=memory, config=cfg)
        assert np.linalg.norm(out.twist.orbit) <= 0.2 * (1 + 1e-12)
        assert np.linalg.norm(out.twist.probe) <= 0.4 * (1 + 1e-12)
        streak = streak + 1 if out.state == GuidanceState.GUIDING else 0
        if out.state == GuidanceState.GUIDING:
            trusted = memory.anchor is not None and memory.anchor.received == now
            # trusted: a streak, or a lone frame while a reckoning was running
            assert not trusted or streak >= cfg.coast_after_frames or armed_at is not None
            armed_at = now if trusted else None
        elif out.state == GuidanceState.COASTING:
            assert armed_at is not None and now - armed_at <= cfg.coast_time
        elif out.state != GuidanceState.GUIDING:
            assert_zero(out)
            if out.state == GuidanceState.HOLD_UNCERTAIN:
                armed_at = None


def test_stale_input_gives_zero_twist_after_the_timeout():
    _, out = step(sample(received=10.0), now=10.0 + 0.19)
    assert out.state == GuidanceState.GUIDING
    _, out = step(sample(received=10.0), now=10.0 + 0.21)
    assert out.state == GuidanceState.STALE_INPUT
    assert_zero(out)
    assert 'no images' in out.cue


@pytest.mark.parametrize('bad', [
    ([np.nan, 0, 0, 1], [0, 0, 0, 1]),
    ([0, 0, 0, 1], [0, 0, np.inf, 1]),
    ([0, 0, 0, 0], [0, 0, 0, 1]),
    ([0, 0, 0, 2], [0, 0, 0, 1]),
])
def test_nan_or_malformed_pose_is_a_zero_twist(bad):
    s = pose_sample(bad[0], bad[1], 0.0, 0.0, 0)
    assert s.pose is None and 'invalid pose' in s.problem
    _, out = step(s)
    assert out.state == GuidanceState.HOLD_UNCERTAIN
    assert_zero(out)


def test_pose_sample_reads_ros_quaternions():
    s = pose_sample(matrix_to_quat_xyzw(rot_x(0.3)), [0, 0, 0, 1], 0.01, 1.5, 3, 'heart')
    np.testing.assert_allclose(s.pose.orbit, rot_x(0.3), atol=1e-12)
    assert (s.uncertainty, s.received, s.seq, s.frame) == (0.01, 1.5, 3, 'heart')


def test_stopped_idle_and_frame_mismatch_give_zero_twist():
    _, out = step(sample(), active=False)
    assert out.state == GuidanceState.STOPPED
    assert_zero(out)
    _, out = step(sample(), target=None)
    assert out.state == GuidanceState.IDLE
    assert_zero(out)
    _, out = step(None)
    assert out.state == GuidanceState.IDLE
    assert_zero(out)
    target = make_target(TARGET.pose, 'A4C', TargetKind.VIEW, frame='heart')
    _, out = step(sample(frame='model_x'), target=target)
    assert out.state == GuidanceState.HOLD_UNCERTAIN and 'target frame' in out.cue
    assert_zero(out)
    _, out = step(sample(frame='heart'), target=target)
    assert out.state == GuidanceState.GUIDING


def test_converges_after_n_frames_within_tolerance_counting_frames_not_ticks():
    cfg = ControllerConfig(converge_tolerance=0.05, release_tolerance=0.1, converge_frames=3)
    near = (TARGET.pose.orbit, TARGET.pose.probe @ rot_z(0.02))
    memory = GuidanceMemory()
    states = []
    for seq, repeats in enumerate([1, 4, 1]):  # the second frame is seen on 4 ticks
        for _ in range(repeats):
            memory, out = step(sample(near, seq=seq), memory=memory, config=cfg)
            states.append((out.state, out.frames_within_tolerance))
    assert states[:5] == [(GuidanceState.GUIDING, 1)] + [(GuidanceState.GUIDING, 2)] * 4
    assert states[5] == (GuidanceState.CONVERGED, 3)
    assert_zero(out)
    # Within the release tolerance it stays converged; beyond it, it guides again.
    memory, out = step(sample((TARGET.pose.orbit, TARGET.pose.probe @ rot_z(0.08)), seq=3), memory=memory, config=cfg)
    assert out.state == GuidanceState.CONVERGED and out.frames_within_tolerance == 0
    assert_zero(out)
    memory, out = step(sample((TARGET.pose.orbit, TARGET.pose.probe @ rot_z(0.2)), seq=4), memory=memory, config=cfg)
    assert out.state == GuidanceState.GUIDING and np.linalg.norm(out.twist.probe) > 0


def test_a_frame_outside_tolerance_resets_the_count():
    cfg = ControllerConfig(converge_frames=3)
    near = (TARGET.pose.orbit, TARGET.pose.probe)
    memory = GuidanceMemory()
    for seq, pose in enumerate([near, near, (np.eye(3), np.eye(3)), near, near]):
        memory, out = step(sample(pose, seq=seq), memory=memory, config=cfg)
    assert out.state == GuidanceState.GUIDING and out.frames_within_tolerance == 2
