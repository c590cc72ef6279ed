"""A target image the ensemble reads more than one way: the grouping of its members into readings, and the
state machine visiting each reading and letting the view match choose (a kinematic world, exact estimates)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from echoposed_ros.geometry import (
    Pose,
    effective_error,
    gauge_fix,
    matrix_to_quat_xyzw,
    mean_and_sigma2,
    rot_x,
    rot_z,
    so3_exp,
)
from echoposed_ros.policy import (
    ControllerConfig,
    GuidanceMemory,
    GuidanceState,
    PolicyError,
    TargetKind,
    ViewSample,
    apply_probe_frame_twist,
    control_step,
    pose_sample,
    target_from_quaternions,
)
from echoposed_ros.policy.readings import target_readings

TRUE = gauge_fix((so3_exp(np.array([0.1, -0.05, 0.0])), rot_z(0.4) @ rot_x(0.1)))
LOOKALIKE = gauge_fix((TRUE.orbit, TRUE.probe @ rot_z(2.6)))      # about 150 deg about the beam from it


def _members(groups, seed=0, jitter=0.02):
    """(orbits, probes) (K, 3, 3): ``n`` members jittered about each ``(pose, n)`` of ``groups``."""
    rng = np.random.default_rng(seed)
    orbits, probes = [], []
    for pose, n in groups:
        for _ in range(n):
            orbits.append(pose.orbit @ so3_exp(rng.normal(size=3) * jitter))
            probes.append(pose.probe @ so3_exp(rng.normal(size=3) * jitter))
    return np.array(orbits), np.array(probes)


def _target(groups, split=0.5, seed=0):
    V, P = _members(groups, seed)
    mean = mean_and_sigma2(V, P)
    return target_from_quaternions(matrix_to_quat_xyzw(mean.orbit), matrix_to_quat_xyzw(mean.probe), 'image',
                                   TargetKind.IMAGE, '', matrix_to_quat_xyzw(V), matrix_to_quat_xyzw(P), split=split)


def test_members_in_two_groups_give_two_readings_most_members_first():
    V, P = _members([(TRUE, 3), (LOOKALIKE, 7)])
    readings = target_readings(V, P, 0.5)
    assert [r.members for r in readings] == [7, 3]
    for r, pose, idx in zip(readings, (LOOKALIKE, TRUE), (slice(3, 10), slice(0, 3))):
        assert math.degrees(float(effective_error(r.pose, pose))) < 3.0
        assert float(effective_error(r.ungauged, r.pose)) < 1e-9          # the same slice, before the gauge fix
        assert r.sigma2 == pytest.approx(float(mean_and_sigma2(V[idx], P[idx]).sigma2))
    # the mean of all ten members shows neither view (18 deg from the majority's, 130 from the other)
    everyone = mean_and_sigma2(V, P)
    assert min(float(effective_error((everyone.orbit, everyone.probe), p)) for p in (TRUE, LOOKALIKE)) > 0.25


def test_a_lone_member_is_no_reading_and_a_group_needs_min_members():
    V, P = _members([(TRUE, 9), (LOOKALIKE, 1)])
    readings = target_readings(V, P, 0.5)
    assert [r.members for r in readings] == [9]
    assert math.degrees(float(effective_error(readings[0].pose, TRUE))) < 2.0   # the outlier no longer pulls it
    assert [r.members for r in target_readings(V, P, 0.5, min_members=1)] == [9, 1]
    assert target_readings(*_members([(TRUE, 2), (LOOKALIKE, 2)]), 0.5, min_members=3) == ()


def test_readings_do_not_depend_on_the_members_order():
    V, P = _members([(TRUE, 4), (LOOKALIKE, 6)], seed=3)
    order = np.random.default_rng(1).permutation(len(V))
    a, b = target_readings(V, P, 0.5), target_readings(V[order], P[order], 0.5)
    assert [r.members for r in a] == [r.members for r in b]
    for x, y in zip(a, b):
        assert float(effective_error(x.pose, y.pose)) < 1e-9


@pytest.mark.parametrize(('kwargs', 'words'), [
    ({'radius': 0.0}, 'radius'),
    ({'radius': float('nan')}, 'radius'),
    ({'radius': 0.5, 'min_members': 0}, 'min_members'),
])
def test_bad_grouping_settings_are_refused_by_name(kwargs, words):
    V, P = _members([(TRUE, 3)])
    with pytest.raises(PolicyError, match=words):
        target_readings(V, P, **kwargs)


def test_malformed_members_are_refused():
    with pytest.raises(PolicyError, match='members'):
        target_readings(np.zeros((3, 3, 3)) + np.eye(3), np.zeros((2, 3, 3)) + np.eye(3), 0.5)
    with pytest.raises(PolicyError, match='orbits'):
        target_readings(np.full((2, 3, 3), np.nan), np.zeros((2, 3, 3)) + np.eye(3), 0.5)


def test_a_target_keeps_the_readings_its_mean_hides():
    assert _target([(TRUE, 10)]).readings == ()                         # one group holds them all
    assert _target([(TRUE, 3), (LOOKALIKE, 7)], split=0.0).readings == ()   # target_split 0: the mean of all
    t = _target([(TRUE, 3), (LOOKALIKE, 7)])
    # the look-alike's group lies within target_split of the mean (18 deg): the mean's own view, searched about
    # already; the view the mean hides is the one reading
    assert [r.members for r in t.readings] == [3]
    assert math.degrees(float(effective_error(t.readings[0].pose, TRUE))) < 3.0
    assert t.candidates == 2 and t.candidate(0) is t and t.candidate(5) is t
    first = t.candidate(1)
    assert float(effective_error(first.pose, t.readings[0].pose)) == 0.0
    assert first.ungauged is not None and first.readings == t.readings and first.name == t.name
    # three views, two away from the mean: the farthest first
    third = gauge_fix((TRUE.orbit @ so3_exp(np.array([0.0, 0.6, 0.0])), TRUE.probe))
    t = _target([(TRUE, 4), (LOOKALIKE, 3), (third, 3)])
    away = [float(effective_error(r.pose, t.pose)) for r in t.readings]
    assert len(away) >= 2 and away == sorted(away, reverse=True) and min(away) > 0.5


# -- through the state machine, a kinematic world with exact estimates -----------------------------------

DT = 0.1
CFG = ControllerConfig(control_rate=1 / DT, fine_settle_time=0.0)


def _guide(target, start: Pose, view: Pose = TRUE, seconds=90.0):
    """Guide from ``start`` with exact estimates; the image matches 1 at ``view``, less with the distance from it."""
    g, memory, states, cues = start, GuidanceMemory(), [], []
    for k in range(int(seconds / DT)):
        now = k * DT
        sample = pose_sample(matrix_to_quat_xyzw(g.orbit), matrix_to_quat_xyzw(g.probe), 0.001, now, k)
        match = 1.0 - 0.5 * float(effective_error(g, view)) ** 2
        memory, out = control_step(memory, now=now, active=True, target=target, sample=sample, config=CFG,
                                   view=ViewSample(match, now, k))
        states.append(out.state)
        cues.append(out.cue)
        if out.state in (GuidanceState.CONVERGED, GuidanceState.MISMATCH):
            break
        g = apply_probe_frame_twist(g, out.cartesian, CFG.orbit_radius, DT)
    return g, memory, states, cues


def test_where_the_mean_finds_no_view_each_reading_is_tried_until_the_image_matches():
    """The mean of all members (near the majority's look-alike) finds no view; the minority's reading does."""
    target = _target([(TRUE, 3), (LOOKALIKE, 7)])
    start = gauge_fix((TRUE.orbit @ so3_exp(np.array([0.2, 0.1, 0.0])), TRUE.probe @ rot_z(-1.2)))
    g, memory, states, cues = _guide(target, start, seconds=300.0)
    assert states[-1] == GuidanceState.CONVERGED, states[-5:]
    assert math.degrees(float(effective_error(g, TRUE))) < 3.0
    assert memory.reading == 1
    assert 'on to reading 1 of 1' in [c for c in cues if 'reads another way' in c][0]
    assert sum(1 for a, b in zip(states, states[1:]) if b == GuidanceState.FINE_ALIGNING != a) == 2


def test_a_fine_alignment_that_succeeds_at_the_mean_never_visits_a_reading():
    target = _target([(TRUE, 7), (LOOKALIKE, 3)])
    start = gauge_fix((TRUE.orbit, TRUE.probe @ rot_z(-1.0)))
    g, memory, states, cues = _guide(target, start, view=target.pose)      # the mean of all members is the view
    assert states[-1] == GuidanceState.CONVERGED, states[-5:]
    assert memory.reading == 0 and not any('reads another way' in c for c in cues)
    assert float(effective_error(g, target.pose)) < math.radians(3.0)


def test_when_no_reading_matches_the_coarse_loop_ends_at_the_mean_in_mismatch():
    target = _target([(TRUE, 3), (LOOKALIKE, 7)])
    elsewhere = gauge_fix((TRUE.orbit @ so3_exp(np.array([0.0, 0.3, 0.0])), TRUE.probe @ rot_z(1.3)))
    start = gauge_fix((TRUE.orbit, TRUE.probe @ rot_z(-1.0)))
    g, memory, states, cues = _guide(target, start, view=elsewhere, seconds=300.0)
    assert states[-1] == GuidanceState.MISMATCH, states[-5:]
    assert memory.fine_failed and memory.reading == 0
    assert float(effective_error(g, target.pose)) < CFG.converge_tolerance
    assert sum(1 for a, b in zip(states, states[1:]) if b == GuidanceState.FINE_ALIGNING != a) == 2


def test_without_a_view_match_the_mean_of_all_members_is_the_goal():
    target = _target([(TRUE, 3), (LOOKALIKE, 7)])
    g, memory = gauge_fix((LOOKALIKE.orbit, LOOKALIKE.probe @ rot_z(0.3))), GuidanceMemory()
    for k in range(300):
        sample = pose_sample(matrix_to_quat_xyzw(g.orbit), matrix_to_quat_xyzw(g.probe), 0.001, k * DT, k)
        memory, out = control_step(memory, now=k * DT, active=True, target=target, sample=sample, config=CFG)
        if out.state == GuidanceState.CONVERGED:
            break
        g = apply_probe_frame_twist(g, out.cartesian, CFG.orbit_radius, DT)
    assert out.state == GuidanceState.CONVERGED
    assert float(effective_error(g, target.pose)) < CFG.converge_tolerance
