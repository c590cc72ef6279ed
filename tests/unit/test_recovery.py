"""Recovery from unsure views: back to the last confident pose by odometry, exploration about the beam, lost;
the safety rules (stale input, stop) still win."""
from __future__ import annotations

import math

import numpy as np
import pytest

from echoposed_ros.geometry import Pose, effective_error, matrix_to_quat_xyzw, so3_exp, step
from echoposed_ros.policy import (
    ControllerConfig,
    GuidanceMemory,
    GuidanceState,
    TargetKind,
    control_step,
    pose_sample,
    target_from_quaternions,
)

DT = 0.1
CFG = ControllerConfig(control_rate=1 / DT, coast_time=0.5, recover_after=1.0, fine_enabled=False)
TARGET = Pose(so3_exp(np.array([0.3, -0.2, 0.0])), so3_exp(np.array([0.1, 0.2, 0.9])))


def _target():
    return target_from_quaternions(matrix_to_quat_xyzw(TARGET.orbit), matrix_to_quat_xyzw(TARGET.probe), 'pose',
                                   TargetKind.POSE)


def _loop(g: Pose, sure, steps: int, memory=None, k0: int = 0, cfg=CFG):
    """Run ``steps`` cycles from true pose ``g``; the estimate is the true pose, confident when ``sure(k)``.
    Returns the poses before each step, the outputs and the memory."""
    memory = memory or GuidanceMemory()
    poses, outs = [], []
    for k in range(k0, k0 + steps):
        now = k * DT
        sample = pose_sample(matrix_to_quat_xyzw(g.orbit), matrix_to_quat_xyzw(g.probe),
                             0.001 if sure(k) else 10.0, now, k)
        memory, out = control_step(memory, now=now, active=True, target=_target(), sample=sample, config=cfg)
        poses.append(g)
        outs.append(out)
        g = step(g, out.twist.orbit, out.twist.probe, DT)
    return poses, outs, memory, g


def test_recovery_returns_to_the_last_confident_pose_by_odometry():
    start = Pose(np.eye(3), np.eye(3))
    # 2 s confident guiding, then unsure from frame 20 on
    poses, outs, memory, g = _loop(start, lambda k: k < 20, 60)
    states = [o.state for o in outs]
    last_sure = poses[19]
    assert GuidanceState.COASTING in states and GuidanceState.HOLD_UNCERTAIN in states
    assert GuidanceState.RECOVERING in states
    back = states.index(GuidanceState.RECOVERING)
    end = back + states[back:].index(next(s for s in states[back:] if s != GuidanceState.RECOVERING))
    # where the return ended is where the last confident frame was taken
    assert float(effective_error(poses[end], last_sure)) < 1e-9
    # it moved away first (coast), so the return did something
    assert float(effective_error(poses[back], last_sure)) > 0.01
    # the speed limits hold on the way back
    for o in outs[back:end]:
        assert np.linalg.norm(o.twist.orbit) <= CFG.max_orbit_speed + 1e-12
        assert np.linalg.norm(o.twist.probe) <= CFG.max_probe_speed + 1e-9


def test_start_unsure_explores_about_the_beam_then_lost():
    start = Pose(np.eye(3), np.eye(3))
    cfg = ControllerConfig(control_rate=1 / DT, recover_after=1.0, explore_speed=0.3, explore_turn=math.pi,
                           fine_enabled=False)
    poses, outs, memory, g = _loop(start, lambda k: False, 200, cfg=cfg)
    states = [o.state for o in outs]
    assert states[0] == GuidanceState.HOLD_UNCERTAIN and GuidanceState.EXPLORING in states
    assert states[-1] == GuidanceState.LOST and 'heart lost' in outs[-1].cue
    assert not np.any(outs[-1].twist.orbit) and not np.any(outs[-1].twist.probe)
    explored = [p for p, s in zip(poses, states) if s == GuidanceState.EXPLORING]
    for p in explored + [g]:
        # the apex and the beam stay where they were: only the turn about the beam changes
        assert np.allclose(p.orbit @ [0, 0, 1], start.orbit @ [0, 0, 1])
        assert np.allclose((p.orbit @ p.probe)[:, 2], (start.orbit @ start.probe)[:, 2], atol=1e-9)
    turned = float(effective_error(g, start))
    assert turned == pytest.approx(math.pi, abs=0.05)     # the whole explore_turn, no more


def test_a_confident_frame_ends_exploration():
    start = Pose(np.eye(3), np.eye(3))
    poses, outs, memory, g = _loop(start, lambda k: k >= 30, 40)
    states = [o.state for o in outs]
    assert states[29] == GuidanceState.EXPLORING and states[30] == GuidanceState.GUIDING


def test_a_view_that_flickers_between_sure_and_unsure_is_guided_not_turned_away_from():
    # unsure from the start: it explores; from frame 30 every other frame is sure. Each sure frame stops the
    # turn and restarts the unsure clock, so the probe is guided on the sure frames and held on the others
    start = Pose(np.eye(3), np.eye(3))
    poses, outs, memory, g = _loop(start, lambda k: k >= 30 and k % 2 == 0, 90)
    states = [o.state for o in outs]
    assert GuidanceState.EXPLORING in states[:30]
    assert GuidanceState.EXPLORING not in states[30:] and GuidanceState.GUIDING in states[30:]
    assert float(effective_error(g, TARGET)) < float(effective_error(poses[30], TARGET)) - 0.1


def test_stale_input_and_stop_still_give_zero_twist_while_recovering():
    start = Pose(np.eye(3), np.eye(3))
    _, outs, memory, g = _loop(start, lambda k: k < 20, 37)
    assert outs[-1].state in (GuidanceState.RECOVERING, GuidanceState.EXPLORING)
    sample = pose_sample(matrix_to_quat_xyzw(g.orbit), matrix_to_quat_xyzw(g.probe), 10.0, 3.7, 37)
    _, stale = control_step(memory, now=3.7 + 1.0, active=True, target=_target(), sample=sample, config=CFG)
    assert stale.state == GuidanceState.STALE_INPUT and not np.any(stale.twist.orbit) and not np.any(stale.twist.probe)
    _, stopped = control_step(memory, now=3.8, active=False, target=_target(), sample=sample, config=CFG)
    assert stopped.state == GuidanceState.STOPPED and not np.any(stopped.cartesian.omega)


def test_no_recovery_and_no_exploration_holds_for_good():
    start = Pose(np.eye(3), np.eye(3))
    cfg = ControllerConfig(control_rate=1 / DT, max_recoveries=0, explore_speed=0.0, fine_enabled=False)
    _, outs, _, _ = _loop(start, lambda k: k < 5, 60, cfg=cfg)
    assert outs[-1].state == GuidanceState.LOST and not np.any(outs[-1].twist.probe)
    assert not any(o.state in (GuidanceState.RECOVERING, GuidanceState.EXPLORING) for o in outs)
