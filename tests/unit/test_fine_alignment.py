"""The fine stage: the view match (fast path against the plain NCC), the search by probe motion on a known
score, and on a phantom heart from offsets up to the entry threshold about each axis, static and beating;
the excursion bound; the second opinion (mismatch) through the state machine."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from echoposed_ros.geometry import Pose, effective_error, matrix_to_quat_xyzw, transform_to_twist, twist_to_transform
from echoposed_ros.policy import (
    AXES,
    ControllerConfig,
    FineSettings,
    GuidanceMemory,
    GuidanceState,
    PolicyError,
    TargetKind,
    ViewMatcher,
    ViewSample,
    apply_probe_frame_twist,
    control_step,
    fine_start,
    fine_step,
    ncc,
    pose_sample,
    target_from_quaternions,
)
from echoposed_ros.policy.fine import axis_rates_to_probe_twist, probe_twist_to_axis_rates
from echoposed_sim.sector import SectorGeometry
from echoposed_sim.slicer import slice_batch

SETTINGS = FineSettings(step=0.05, min_step=0.007, max_excursion=0.35, settle_time=0.0, max_time=60.0,
                        max_turn_speed=0.5, max_orbit_speed=0.25, period=0.1)


def _world_moved(pose, rates, dt):
    """The probe's true pose (4, 4, from the entry pose) after holding the axis rates (5,) rad/s for dt s: the
    rigid motion a robot arm makes."""
    return pose @ twist_to_transform(axis_rates_to_probe_twist(np.asarray(rates) * dt, 1.0))


def _world_way(pose):
    """(5,) where the true pose (4, 4) is from the entry pose, as axis rates held one second."""
    return probe_twist_to_axis_rates(transform_to_twist(pose), 1.0)


def _run(score_at, settings=SETTINGS, steps=2000, periods=None, prior_at=None):
    """Drive the search with ``score_at(x)`` (and the pose estimate's ``prior_at(x)``, where it puts the target
    from there), ``x`` (5,) the probe's true pose as the way from the entry pose; returns the final memory and the
    largest excursion."""
    m = fine_start(0.0, settings)
    now, widest, pose = 0.0, 0.0, np.eye(4)
    rng = np.random.default_rng(0)
    for k in range(steps):
        where = _world_way(pose)
        prior = prior_at(where) if prior_at is not None else None
        m, out = fine_step(m, now=now, view=ViewSample(score_at(where), now, k), settings=settings, prior=prior)
        widest = max(widest, m.excursion)
        if out.done and not np.any(out.rates):
            return m, widest
        dt = settings.period if periods is None else periods(rng)
        pose = _world_moved(pose, out.rates, dt)     # where the probe really is when the next frame comes
        now += dt
    raise AssertionError('the search did not end')


def test_search_finds_the_peak_of_a_smooth_score():
    peak = np.array([0.08, -0.03, 0.02, -0.05, 0.04])
    m, _ = _run(lambda x: 1.0 - float(np.sum((x - peak) ** 2)))
    assert np.max(np.abs(m.offset - peak)) < SETTINGS.min_step
    assert np.allclose(m.at, m.best)


def test_odometry_holds_with_uneven_control_periods():
    # ticks of 0.05-0.15 s while each command is computed for 0.1 s: the offset integrates what was
    # really commanded, so the search still ends at the peak
    peak = np.array([-0.06, 0.02, 0.0, 0.03, -0.02])
    m, _ = _run(lambda x: 1.0 - float(np.sum((x - peak) ** 2)), periods=lambda rng: rng.uniform(0.05, 0.15))
    assert np.max(np.abs(m.offset - peak)) < 2 * SETTINGS.min_step


def test_the_search_never_leaves_the_excursion_bound():
    bound = replace(SETTINGS, max_excursion=0.1)
    far = np.array([0.3, 0.0, 0.0, 0.0, 0.0])        # the best match lies 0.3 rad away
    m, widest = _run(lambda x: 1.0 - float(np.sum((x - far) ** 2)), settings=bound)
    assert widest <= bound.max_excursion + 1e-6
    assert m.offset[0] == pytest.approx(bound.max_excursion, abs=0.01)   # it ends at the bound, towards it


def _plateau(x):
    """A match with a small bump at the entry on a plateau, the view 0.25 rad away about the beam."""
    z = x[0]
    return (0.86 + 0.01 * math.exp(-(z / 0.03) ** 2) + 0.14 * math.exp(-((z - 0.25) / 0.1) ** 2)
            - float(np.sum(x[1:] ** 2)))


def test_a_search_after_a_failed_one_steps_wider_about_the_beam():
    twice = replace(SETTINGS, attempts=2, accept_match=0.99)
    same, _ = _run(_plateau, settings=twice)               # both searches see only the bump: they end on it
    assert same.done and same.best_score < 0.99 and np.allclose(same.at, same.best, atol=1e-9)
    assert abs(same.offset[0]) < SETTINGS.min_step
    wider, widest = _run(_plateau, settings=replace(twice, retry_turn_scale=2.0))
    assert wider.attempt == 2 and wider.best_score > 0.99
    assert abs(wider.offset[0] - 0.25) < 2 * SETTINGS.min_step
    assert widest <= twice.max_excursion + 1e-6
    # a first search that succeeds never takes the wider steps
    smooth = np.array([0.08, -0.03, 0.02, -0.05, 0.04])
    m, _ = _run(lambda x: 1.0 - float(np.sum((x - smooth) ** 2)), settings=replace(twice, retry_turn_scale=2.0))
    assert m.attempt == 1 and np.max(np.abs(m.offset - smooth)) < SETTINGS.min_step


VIEW = np.array([0.25, 0.0, 0.0, 0.0, 0.0])     # where _plateau's view lies


def test_the_pose_estimate_points_the_search_across_a_plateau_and_the_match_decides():
    settings = replace(SETTINGS, accept_match=0.99, prior=1.0)
    alone, _ = _run(_plateau, settings=replace(settings, prior=0.0))      # the bump at the entry holds it
    assert alone.best_score < 0.99 and abs(alone.offset[0]) < SETTINGS.min_step
    # an estimate that reads 30 % short and a little off on a tilt still points the right way: the view is found
    led, widest = _run(_plateau, settings=settings, prior_at=lambda x: 0.7 * (VIEW - x) + [0, 0.01, 0, 0, 0])
    assert led.best_score > 0.99 and np.max(np.abs(led.offset - VIEW)) < 2 * SETTINGS.min_step
    assert widest <= SETTINGS.max_excursion + 1e-6
    # an estimate pointing away: its point matches worse, the search goes on from the base as without it
    away, _ = _run(_plateau, settings=settings, prior_at=lambda x: -(VIEW - x))
    assert not away.propose and np.allclose(away.offset, alone.offset) and away.best_score == alone.best_score
    # no estimate, or one that puts the target here (within a step), leaves the search as it was
    for prior_at in (None, lambda x: np.zeros(len(AXES))):
        same, _ = _run(_plateau, settings=settings, prior_at=prior_at)
        assert same.propose and np.allclose(same.offset, alone.offset) and same.last_now == alone.last_now


def test_a_return_to_the_best_view_lands_on_the_pose_it_was_measured_at():
    """Odometry keeps poses, not a sum of moves: after a search that swings along every axis and is stopped by the
    time limit, the probe's true pose is where the best match was measured (a sum of the moves, turns not
    commuting, ends elsewhere)."""
    peak = np.array([0.12, -0.06, 0.05, 0.1, -0.08])
    settings = replace(SETTINGS, accept_match=0.99, rest_match=0.5, max_time=4.0)
    m = fine_start(0.0, settings)
    now, pose, seen, summed = 0.0, np.eye(4), {}, np.zeros(len(AXES))
    for k in range(2000):
        score = 0.95 - float(np.sum((_world_way(pose) - peak) ** 2))     # never accepted: the time limit ends it
        seen.setdefault(score, pose)
        m, out = fine_step(m, now=now, view=ViewSample(score, now, k), settings=settings)
        if out.done and not np.any(out.rates):
            break
        pose, summed, now = _world_moved(pose, out.rates, 0.1), summed + out.rates * 0.1, now + 0.1
    assert m.done and 0.5 < m.best_score < 0.95
    assert np.allclose(pose, seen[m.best_score], atol=1e-9)              # back on the very pose
    assert np.allclose(m.at, pose, atol=1e-9)                           # and odometry knows it
    assert np.max(np.abs(summed - _world_way(pose))) > 1e-3             # where a sum of the moves would put it


def test_a_search_that_never_reaches_the_accepted_match_ends_at_its_best_view():
    """Not back at the entry pose: the most target-like view found is where the probe rests, both when the
    searches end and when the time limit stops them."""
    peak = np.array([0.1, 0.02, -0.02, 0.03, -0.03])
    def score(x):
        return 0.95 - float(np.sum((x - peak) ** 2))          # the view never reaches accept_match
    settings = replace(SETTINGS, attempts=2, accept_match=0.99, rest_match=0.9)
    m, _ = _run(score, settings=settings)
    assert m.done and m.best_score < 0.99 and m.attempt == 2
    assert np.allclose(m.at, m.best, atol=1e-9) and np.max(np.abs(m.offset - peak)) < 2 * SETTINGS.min_step
    cut, _ = _run(score, settings=replace(settings, max_time=2.0))
    assert cut.done and cut.last_now < 2.0 + 10 * SETTINGS.period and np.allclose(cut.at, cut.best, atol=1e-9)
    assert score(cut.offset) > score(np.zeros(len(AXES)))    # nearer the view than where the search began
    # a best view that matched less than rest_match is no view like the target: back to the entry pose
    poor, _ = _run(score, settings=replace(settings, rest_match=0.96))
    assert poor.done and poor.best_score < 0.96 and np.allclose(poor.offset, 0.0, atol=1e-9)


def test_a_best_view_is_confirmed_over_confirm_time_before_it_counts_as_converged():
    """One lucky frame passes ``accept_match`` a few degrees off on a beating heart; the mean over
    ``confirm_time`` at that point does not, so the search is not converged; a real peak is."""
    settings = replace(SETTINGS, attempts=2, accept_match=0.99, rest_match=0.9, max_time=30.0)
    lucky = {'left': 0}
    def lucky_once(x):      # a hill below the bar, and one lucky frame 0.05 rad about the beam
        if lucky['left'] and abs(x[0] - 0.05) < 1e-6 and np.allclose(x[1:], 0.0):
            lucky['left'] -= 1
            return 0.995
        return 0.95 - float(np.sum(x ** 2))
    lucky['left'] = 1
    trusting, _ = _run(lucky_once, settings=settings)
    assert trusting.done and trusting.best_score == 0.995          # converged on the lucky frame
    lucky['left'] = 1
    checked, _ = _run(lucky_once, settings=replace(settings, confirm_time=0.5))
    assert checked.done and checked.best_score < 0.99 and checked.attempt == 2
    peak = np.array([0.1, 0.0, 0.0, 0.0, 0.0])
    real, _ = _run(lambda x: 1.0 - float(np.sum((x - peak) ** 2)), settings=replace(settings, confirm_time=0.5))
    assert real.done and real.best_score >= 0.99 and np.max(np.abs(real.offset - peak)) < 2 * SETTINGS.min_step


def test_settings_refuse_bad_values():
    with pytest.raises(PolicyError, match='min_step'):
        replace(SETTINGS, min_step=0.1)
    with pytest.raises(PolicyError, match='measure_frames'):
        replace(SETTINGS, measure_frames=0)
    with pytest.raises(PolicyError, match='retry_turn_scale'):
        replace(SETTINGS, retry_turn_scale=0.5)
    with pytest.raises(PolicyError, match='fine_retry_turn_scale'):
        ControllerConfig(fine_retry_turn_scale=0.5)
    with pytest.raises(PolicyError, match='rest_match'):
        replace(SETTINGS, accept_match=0.9, rest_match=0.95)
    with pytest.raises(PolicyError, match='fine_rest_match'):
        ControllerConfig(fine_rest_match=0.995)


@pytest.mark.parametrize(('parameter', 'value', 'expected'), [
    ('fine_min_step', 0.1, r'ControllerConfig\.fine_min_step: expected <= fine_step \(0\.05 rad\), got 0\.1'),
    ('fine_rest_match', 0.995, r'ControllerConfig\.fine_rest_match: expected <= fine_accept_match'),
    ('fine_attempts', 0, r'ControllerConfig\.fine_attempts: expected an integer >= 1, got 0'),
    ('fine_settle_time', -0.1, r'ControllerConfig\.fine_settle_time: expected a finite number >= 0'),
    ('fine_max_time', 0.0, r'ControllerConfig\.fine_max_time: expected a finite number > 0'),
    ('fine_prior', -0.5, r'ControllerConfig\.fine_prior: expected a finite number >= 0, got -0\.5'),
])
def test_controller_config_names_its_own_parameter_for_fine_search_rules(parameter, value, expected):
    # one set of rules (check_fine_settings) for FineSettings and the node's parameters, each named as the user set it
    with pytest.raises(PolicyError, match=expected):
        ControllerConfig(**{parameter: value})


def test_matcher_equals_the_plain_ncc():
    rng = np.random.default_rng(1)
    target, live = rng.random((2, 24, 20))
    mask = np.zeros((24, 20), bool)
    mask[3:20, 2:18] = True
    raw = ViewMatcher(target, mask, sigma_px=0.0).match(live).score
    assert raw == pytest.approx(ncc(live, target, mask), abs=1e-12)
    def blur(a, s):
        return ndimage.gaussian_filter(a, s, mode='nearest')
    mixed = ViewMatcher(target, mask, sigma_px=2.0).match(live).score
    naive = (ncc(live, target, mask) + ncc(blur(live, 2.0), blur(target, 2.0), mask)
             + ncc(blur(live, 4.0), blur(target, 4.0), mask)) / 3.0
    assert mixed == pytest.approx(naive, abs=1e-12)
    assert ViewMatcher(target, mask).match(3.0 * target + 1.0).score == pytest.approx(1.0)


def test_a_frame_between_two_cine_frames_matches_fully():
    rng = np.random.default_rng(2)
    cine = ndimage.gaussian_filter(rng.random((4, 32, 32)), (0, 1.5, 1.5))
    live = 0.3 * cine[2] + 0.7 * cine[3]
    got = ViewMatcher(cine, None, sigma_px=0.0).match(live)
    assert got.score == pytest.approx(1.0, abs=1e-9) and got.phase == 2
    assert max(ncc(live, f) for f in cine) < 0.999      # no single frame would say so


def test_matcher_errors_name_the_problem():
    m = ViewMatcher(np.random.default_rng(3).random((8, 8)))
    with pytest.raises(PolicyError, match=r'live frame shape \(9, 8\)'):
        m.match(np.zeros((9, 8)))
    assert math.isnan(m.match(np.zeros((8, 8))).score)      # a blank frame is no sample
    with pytest.raises(PolicyError, match='no contrast'):
        ViewMatcher(np.ones((8, 8)))
    with pytest.raises(PolicyError, match='mask shape'):
        ViewMatcher(np.random.default_rng(3).random((8, 8)), np.ones((4, 4), bool))


# -- on a phantom heart -------------------------------------------------------------------------------

SECTOR = SectorGeometry(height=64, width=64)


@pytest.fixture(scope='module')
def heart():
    from echoposed_sim.phantom import make_phantom
    return make_phantom(11, frames=6)


def _search_on(volume, offset_axis: int, angle: float, beating: bool) -> tuple[float, float]:
    """Fine search from the target pose moved ``angle`` rad along ``AXES[offset_axis]``: (final true
    effective error, largest excursion), both rad."""
    T = Pose(volume.base_orbit, volume.base_probe)
    n = volume.frames if beating else 1
    cine = slice_batch(volume, np.repeat(T.orbit[None], n, 0), np.repeat(T.probe[None], n, 0), np.arange(n) / n,
                       SECTOR)
    matcher = ViewMatcher(cine, SECTOR.mask)
    rates = np.zeros(len(AXES))
    rates[offset_axis] = angle / SETTINGS.period
    g = apply_probe_frame_twist(T, axis_rates_to_probe_twist(rates, 0.1), 0.1, SETTINGS.period)
    m, now, widest = fine_start(0.0, SETTINGS), 0.0, 0.0
    for k in range(1500):
        phase = (now / volume.cycle_s) % 1.0 if beating else 0.0
        image = slice_batch(volume, g.orbit[None], g.probe[None], np.array([phase]), SECTOR)[0]
        m, out = fine_step(m, now=now, view=ViewSample(matcher.match(image).score, now, k), settings=SETTINGS)
        widest = max(widest, m.excursion)
        if out.done and not np.any(out.rates):
            return float(effective_error(g, T)), widest
        g = apply_probe_frame_twist(g, axis_rates_to_probe_twist(out.rates, 0.1), 0.1, SETTINGS.period)
        now += SETTINGS.period
    raise AssertionError('the search did not end')


@pytest.mark.slow
def test_fine_alignment_from_the_entry_threshold_about_each_axis(heart):
    """From the entry threshold (0.15 rad) about each axis, both ways, static and beating (20 starts): most
    end within 3 deg, every one ends nearer than it started, and none leaves the excursion bound. (Not yet
    every one within 3 deg: from 8.6 deg an orbit or a tilt ends 4-7 deg off, at a local peak; 16 of 20 within 3.)"""
    entry = ControllerConfig().fine_entry_tolerance
    errors = []
    for beating in (False, True):
        for axis in range(len(AXES)):
            for sign in (1.0, -1.0):
                err, widest = _search_on(heart, axis, sign * entry, beating)
                errors.append(math.degrees(err))
                assert err < entry, (AXES[axis], sign, beating, math.degrees(err))
                assert widest <= SETTINGS.max_excursion + 1e-6
    assert sum(e < 3.0 for e in errors) >= 14, np.round(errors, 1)
    assert sorted(errors)[len(errors) // 2] < 1.5, np.round(errors, 1)   # the median


# -- through the state machine ------------------------------------------------------------------------

def _target_and_sample(seq: int, now: float):
    q = matrix_to_quat_xyzw(np.eye(3))
    target = target_from_quaternions(q, q, 'image', TargetKind.IMAGE)
    return target, pose_sample(q, q, 0.001, now, seq)


def test_estimate_on_target_but_image_disagrees_is_a_mismatch_not_converged():
    cfg = ControllerConfig(fine_max_time=5.0, control_rate=10.0, fine_settle_time=0.0)
    memory, states = GuidanceMemory(), []
    for k in range(200):
        now = 0.1 * k
        target, sample = _target_and_sample(k, now)
        memory, out = control_step(memory, now=now, active=True, target=target, sample=sample, config=cfg,
                                   view=ViewSample(0.8, now, k))     # the image never looks like the target
        states.append(out.state)
    assert GuidanceState.FINE_ALIGNING in states and GuidanceState.CONVERGED not in states
    assert states[-1] == GuidanceState.MISMATCH and out.disagree and out.view_match == pytest.approx(0.8)
    assert not np.any(out.twist.orbit) and not np.any(out.twist.probe) and not np.any(out.cartesian.v)
    assert 'does not match' in out.cue
    assert not memory.fine_rest     # no view like the target: the estimate decided where the probe stopped


def test_after_a_nearly_matching_search_the_probe_rests_until_the_estimate_says_it_was_moved_away():
    cfg = ControllerConfig(fine_max_time=3.0, control_rate=10.0, fine_settle_time=0.0)
    near = 0.5 * (cfg.fine_rest_match + cfg.fine_accept_match)
    memory, k = GuidanceMemory(), 0
    while not memory.fine_rest:
        target, sample = _target_and_sample(k, 0.1 * k)
        memory, out = control_step(memory, now=0.1 * k, active=True, target=target, sample=sample, config=cfg,
                                   view=ViewSample(near, 0.1 * k, k))
        k += 1
        assert k < 200
    assert out.state == GuidanceState.MISMATCH and 'resting' in out.cue
    q = matrix_to_quat_xyzw(np.eye(3))
    far = cfg.fine_entry_tolerance + cfg.fine_max_excursion
    states = []
    for angle in (0.05, far - 0.02, far + 0.05):       # within what the search may have moved: stays at rest
        q_far = matrix_to_quat_xyzw(Rotation.from_rotvec([0.0, 0.0, angle]).as_matrix())
        memory, out = control_step(memory, now=0.1 * k, active=True, target=target,
                                   sample=pose_sample(q, q_far, 0.001, 0.1 * k, k), config=cfg,
                                   view=ViewSample(near, 0.1 * k, k))
        states.append(out.state)
        k += 1
    assert states == [GuidanceState.MISMATCH, GuidanceState.MISMATCH, GuidanceState.GUIDING]
    assert np.any(out.twist.probe) and not memory.fine_rest and memory.fine_failed


def test_estimate_and_image_agree_converges_after_the_fine_stage():
    cfg = ControllerConfig(control_rate=10.0, fine_settle_time=0.0)
    memory, states = GuidanceMemory(), []
    for k in range(400):
        now = 0.1 * k
        target, sample = _target_and_sample(k, now)
        where = memory.fine.offset + memory.fine.rate * 0.1 if memory.fine is not None else np.zeros(len(AXES))
        score = 1.0 - float(np.sum(where ** 2))
        memory, out = control_step(memory, now=now, active=True, target=target, sample=sample, config=cfg,
                                   view=ViewSample(score, now, k))
        states.append(out.state)
        if out.state == GuidanceState.CONVERGED:
            break
    assert states[0] == GuidanceState.GUIDING and GuidanceState.FINE_ALIGNING in states
    assert states[-1] == GuidanceState.CONVERGED and not out.disagree


def test_without_a_view_the_coarse_loop_converges_as_before():
    cfg = ControllerConfig(control_rate=10.0)
    memory = GuidanceMemory()
    for k in range(cfg.converge_frames + 1):
        target, sample = _target_and_sample(k, 0.1 * k)
        memory, out = control_step(memory, now=0.1 * k, active=True, target=target, sample=sample, config=cfg)
    assert out.state == GuidanceState.CONVERGED and math.isnan(out.view_match)


def test_fine_stage_is_skipped_when_disabled():
    cfg = ControllerConfig(control_rate=10.0, fine_enabled=False)
    memory = GuidanceMemory()
    for k in range(cfg.converge_frames + 1):
        target, sample = _target_and_sample(k, 0.1 * k)
        memory, out = control_step(memory, now=0.1 * k, active=True, target=target, sample=sample, config=cfg,
                                   view=ViewSample(0.5, 0.1 * k, k))
    assert out.state == GuidanceState.CONVERGED


def test_rotation_helpers_are_consistent():
    # the probe-frame twist of an orbit axis turns the probe about the point radius deep on the beam
    rates = np.zeros(len(AXES))
    rates[3] = 0.2
    tw = axis_rates_to_probe_twist(rates, 0.1)
    assert np.allclose(tw.omega, [0.2, 0, 0]) and np.allclose(tw.v, [0, 0.02, 0])
    assert Rotation.from_rotvec(tw.omega).magnitude() == pytest.approx(0.2)
    # and back: any rates survive the round trip; the apex's motion along the beam has no axis
    for r in np.random.default_rng(4).normal(0.0, 0.3, (20, len(AXES))):
        assert np.allclose(probe_twist_to_axis_rates(axis_rates_to_probe_twist(r, 0.1), 0.1), r)
    along = probe_twist_to_axis_rates(type(tw)(np.array([0.0, 0.0, 0.05]), np.zeros(3)), 0.1)
    assert np.allclose(along, 0.0)


def test_the_fine_stage_looks_first_where_a_confident_estimate_points():
    """The estimate says the target lies 0.1 rad about the beam the other way from the search's first trial
    (+fine_step): with ``fine_prior`` the first fine move goes where the estimate points, without it to +step."""
    q = matrix_to_quat_xyzw(np.eye(3))
    off = matrix_to_quat_xyzw(Rotation.from_rotvec([0.0, 0.0, 0.1]).as_matrix())   # the probe 0.1 rad past
    target = target_from_quaternions(q, q, 'image', TargetKind.IMAGE)
    first = {}
    for prior in (1.0, 0.0):
        cfg = ControllerConfig(control_rate=10.0, fine_settle_time=0.0, fine_prior=prior)
        memory = GuidanceMemory()
        for k in range(100):
            memory, out = control_step(memory, now=0.1 * k, active=True, target=target,
                                       sample=pose_sample(q, off, 0.001, 0.1 * k, k), config=cfg,
                                       view=ViewSample(0.9, 0.1 * k, k))
            if out.state == GuidanceState.FINE_ALIGNING:
                first[prior] = out.cartesian.omega[2]
                break
    assert first[1.0] < 0 < first[0.0]


def test_shrinking_a_frame_averages_instead_of_aliasing():
    from echoposed_ros.policy.similarity import fit_to
    a = np.arange(16.0).reshape(4, 4)
    assert np.array_equal(fit_to(a, (2, 2)), [[2.5, 4.5], [10.5, 12.5]])     # 2 x 2 block means
    speckle = np.random.default_rng(0).random((128, 128))
    assert fit_to(speckle, (64, 64)).std() < 0.6 * speckle.std()             # noise averaged, not sampled
    assert fit_to(speckle, (50, 70)).shape == (50, 70)
    assert fit_to(a, (4, 4)) is not None and np.array_equal(fit_to(a, (4, 4)), a)


def _run_with_latency(score_at, latency_steps, stamped, settings=SETTINGS, steps=4000):
    """Like :func:`_run`, but each frame arrives ``latency_steps`` periods after it was taken (an image
    pipeline's delay) and shows where the probe was then; ``stamped``: frames carry when they were taken."""
    m = fine_start(0.0, settings)
    now, where = 0.0, np.zeros(len(AXES))
    history = [(0.0, where)] * (latency_steps + 1)
    pose = np.eye(4)
    for k in range(steps):
        taken, seen = history[-1 - latency_steps]
        view = ViewSample(score_at(seen), now, k, taken if stamped else float('nan'))
        m, out = fine_step(m, now=now, view=view, settings=settings)
        if out.done and not np.any(out.rates):
            return m
        pose = _world_moved(pose, out.rates, settings.period)
        now += settings.period
        history.append((now, _world_way(pose)))
    raise AssertionError('the search did not end')


def test_frames_count_by_when_they_were_taken_not_when_they_arrived():
    # an image pipeline three periods late: timed by their stamps, only frames taken after a move count and the
    # search finds the peak; timed by arrival, frames from before the move are measured as the new point
    peak = np.array([0.08, -0.03, 0.02, -0.05, 0.04])
    score = lambda x: 1.0 - float(np.sum((x - peak) ** 2))   # noqa: E731
    stamped = _run_with_latency(score, 3, stamped=True)
    assert np.max(np.abs(stamped.offset - peak)) < SETTINGS.min_step
    late = _run_with_latency(score, 3, stamped=False)
    assert np.max(np.abs(late.offset - peak)) > 3 * SETTINGS.min_step


def test_view_sample_is_taken_when_stamped_else_when_received():
    assert ViewSample(0.9, 2.0, 1, 1.5).taken == 1.5
    assert ViewSample(0.9, 2.0, 1).taken == 2.0
