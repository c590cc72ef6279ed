"""Offline guidance evaluation (echoposed_ros.eval.guidance, stats, report; `echoposed eval guidance`)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from echoposed_ros.eval.guidance import (
    DatasetResult,
    GuidanceError,
    GuidanceProtocol,
    OracleEstimator,
    RunResult,
    converged_runs,
    dispersion_deg,
    evaluate_dataset,
    guide,
    inter_pair_summary,
    intra_specs,
    state_share,
    summarize_dataset,
    summarize_inter,
    summarize_misses,
)
from echoposed_ros.eval.report import target_checks, write_report
from echoposed_ros.eval.stats import StatsError, bootstrap_ci, ecdf, p90, spearman, success_rate
from echoposed_ros.geometry import Pose, effective_error, gauge_fix, rot_x, rot_y, rot_z
from echoposed_ros.policy import ControllerConfig, GuidanceState
from echoposed_sim.sector import SectorGeometry
from echoposed_sim.volume import StandardView, Volume

SECTOR = SectorGeometry(depth_mm=60.0, height=32, width=32)
# The coarse loop and the harness (the fine stage has its own tests: test_fine_alignment.py).
CONFIG = ControllerConfig(fine_enabled=False)
TOL_DEG = math.degrees(CONFIG.converge_tolerance)


def tiny_volume(seed: int) -> Volume:
    """A smooth random 2-frame volume (40^3 voxels of 2 mm) with three standard views."""
    rng = np.random.default_rng(seed)
    d = ndimage.gaussian_filter(rng.random((2, 40, 40, 40)), (0, 2, 2, 2))
    d = ((d - d.min()) / (d.max() - d.min()) * 255).astype(np.uint8)
    views = {name: StandardView(*gauge_fix((rot_x(0.1 * k), rot_z(0.7 * k))))
             for k, name in enumerate(('A4C', 'A2C', 'A3C'))}
    return Volume(data=d, spacing=np.full(3, 2.0), centre=np.full(3, 39.0), radius=35.0, cycle_s=0.8, views=views,
                  name=f'tiny{seed}')


@pytest.fixture(scope='module')
def oracle_dataset():
    protocol = GuidanceProtocol(runs=2, inter_runs=2, max_seconds=12.0, n_boot=200, seed=3)
    return evaluate_dataset('tiny', [lambda: tiny_volume(0), lambda: tiny_volume(1)], OracleEstimator(seed=5),
                            CONFIG, protocol, SECTOR), protocol


# -- the harness with the oracle --------------------------------------------------------------------

@pytest.mark.slow
def test_oracle_guidance_converges_in_every_mode(oracle_dataset):
    ds, protocol = oracle_dataset
    modes = [r.mode for r in ds.results]
    assert modes.count('static') == modes.count('dynamic') == 2 * protocol.runs
    assert modes.count('inter') == 2 * 3 * protocol.inter_runs
    for r in ds.results:
        assert r.converged, (r.mode, r.view, r.final_error_deg)
        assert r.initial_error_deg > 5 * r.final_error_deg or r.initial_error_deg < 10
        # the controller stops once its estimate is within tolerance; the oracle's estimate is near exact
        assert r.final_error_deg < TOL_DEG + 0.5, (r.mode, r.final_error_deg)
        assert r.time_s < protocol.max_seconds
        assert np.all(r.sigma2 >= 0) and r.states[-1] == GuidanceState.CONVERGED
    assert max(r.initial_error_deg for r in ds.results) > 30   # starts were really far


@pytest.mark.slow
def test_static_and_dynamic_share_starts_and_targets(oracle_dataset):
    ds, _ = oracle_dataset
    static = [r for r in ds.results if r.mode == 'static']
    dynamic = [r for r in ds.results if r.mode == 'dynamic']
    for a, b in zip(static, dynamic):
        assert a.volume == b.volume and a.initial_error_deg == pytest.approx(b.initial_error_deg)


@pytest.mark.slow
def test_summary_has_every_key_with_sane_values(oracle_dataset):
    ds, _ = oracle_dataset
    doc = json.loads(json.dumps(ds.as_json()))          # JSON-serialisable
    for mode in ('intra_static', 'intra_dynamic'):
        s = doc[mode]
        assert s['runs'] == 4
        for key in ('mean', 'median', 'p90'):
            lo, hi = s[f'{key}_ci95_deg']
            assert 0 <= lo <= s[f'{key}_deg'] <= hi < TOL_DEG + 0.5
        assert s['success_within_5deg'] == s['success_within_10deg'] == 1.0
        assert s['initial_mean_deg'] > s['mean_deg'] and s['converged_share'] == 1.0
        assert s['hold_share'] == 0.0 and s['uncertain_target_share'] == 0.0
        assert s['misses'] == {'tolerance_deg': 5.0, 'runs': 0, 'quiet': 0}
    inter = doc['inter']
    assert inter['pairs'] == 6 and inter['discarded_share'] == 0.0 and inter['discarded_pairs'] == 0
    assert 0 <= inter['mean_dispersion_deg'] < 2 * TOL_DEG
    assert set(inter['per_view']) == {'A2C', 'A3C', 'A4C'}
    rho = doc['sigma_error_spearman']
    assert rho is None or -1.0 <= rho <= 1.0
    assert len(doc['run_table']) == len(ds.results)
    for row, r in zip(doc['run_table'], ds.results):
        if r.mode == 'inter':
            continue
        apex, (x, y, z) = row['final_apex_deg'], row['final_turn_xyz_deg']
        assert math.hypot(apex, math.hypot(x, y, z)) == pytest.approx(r.final_error_deg, abs=1e-6)


def test_oracle_loop_converges_for_a_half_turn_left_factor():
    v = tiny_volume(2)
    protocol = GuidanceProtocol(runs=2, max_seconds=12.0)
    specs = intra_specs(v, np.random.default_rng(0), protocol, SECTOR)
    oracle = OracleEstimator(members=3, noise_deg=0.0, A=(rot_z(np.pi), rot_x(np.pi)))
    for r in guide(v, specs, oracle, CONFIG, sector=SECTOR, rate_hz=15.0, max_seconds=12.0):
        assert r.converged and r.final_error_deg < TOL_DEG
        assert np.all(r.sigma2 < 1e-12)


def test_a_run_goes_the_same_way_alone_and_among_others():
    """Runs on one volume are simulated side by side: each must own its session (world, commands, clock), so a
    run's trajectory depends on its spec alone, not on which runs share the call or how long they last."""
    v = tiny_volume(3)
    protocol = GuidanceProtocol(runs=3, max_seconds=6.0)
    specs = intra_specs(v, np.random.default_rng(2), protocol, SECTOR)
    oracle = OracleEstimator(members=3, noise_deg=0.0)
    together = guide(v, specs, oracle, CONFIG, sector=SECTOR, rate_hz=15.0, max_seconds=6.0)
    assert len({len(r.actual_deg) for r in together}) > 1          # runs of different lengths share the call
    for spec, r in zip(specs, together):
        alone = guide(v, [spec], oracle, CONFIG, sector=SECTOR, rate_hz=15.0, max_seconds=6.0)[0]
        assert len(alone.actual_deg) == len(r.actual_deg), (spec.mode, spec.index)
        np.testing.assert_allclose(alone.actual_deg, r.actual_deg, atol=1e-9, err_msg=f'{spec.mode} {spec.index}')


def test_with_cycle_fusion_the_loop_still_converges_and_the_controller_sees_fused_members():
    """The pose node's cycle fusion in the loop (the probe's simulated poses as the arm's): with a pinned-like
    frame (A_p = I) and noisy members the runs converge as without it, and the estimated error (fused
    members, carried along the motion) jitters less from step to step (second differences: the motion's
    steady change and the target's own estimate drop out)."""
    v = tiny_volume(4)
    protocol = GuidanceProtocol(runs=1, max_seconds=12.0)
    specs = intra_specs(v, np.random.default_rng(1), protocol, SECTOR)
    A = (Rotation.random(random_state=7).as_matrix(), np.eye(3))
    gap = {}
    for window in (0.0, 1.0):
        oracle = OracleEstimator(members=3, noise_deg=2.0, A=A, seed=2)
        runs = guide(v, specs, oracle, CONFIG, sector=SECTOR, rate_hz=15.0, max_seconds=12.0, fusion_window_s=window)
        for r in runs:
            assert r.converged and r.final_error_deg < TOL_DEG + 1.0, (window, r.final_error_deg)
        gap[window] = np.mean(np.concatenate([np.abs(np.diff(r.estimated_deg, 2)) for r in runs]))
    assert gap[1.0] < 0.5 * gap[0.0], gap


def test_oracle_reports_the_left_factor_with_members():
    A = tuple(Rotation.random(2, random_state=1).as_matrix())
    g = gauge_fix((Rotation.random(4, random_state=2).as_matrix(), Rotation.random(4, random_state=3).as_matrix()))
    est = OracleEstimator(members=4, noise_deg=0.0, A=A).estimate(np.zeros((4, 8, 8)), g.orbit, g.probe)
    assert est.member_orbits.shape == (4, 4, 3, 3)
    np.testing.assert_allclose(est.member_orbits[:, 0], A[0] @ g.orbit, atol=1e-9)
    np.testing.assert_allclose(effective_error((est.orbit, est.probe), (A[0] @ g.orbit, A[1] @ g.probe)), 0, atol=1e-7)
    noisy = OracleEstimator(members=5, noise_deg=2.0, seed=4).estimate(np.zeros((4, 8, 8)), g.orbit, g.probe)
    assert np.all(noisy.sigma2 > 0) and np.all(noisy.sigma2 < np.radians(6.0) ** 2)


def test_oracle_noise_can_grow_with_the_tilt():
    u_axis = gauge_fix((np.stack([np.eye(3)] * 40), np.stack([np.eye(3)] * 40)))        # beam through the centre
    tilted = gauge_fix((np.stack([np.eye(3)] * 40), np.stack([rot_x(np.radians(25.0))] * 40)))
    oracle = OracleEstimator(members=5, noise_deg=1.0, noise_tilt_deg=5.0, seed=2)
    s0 = oracle.estimate(np.zeros((40, 4, 4)), u_axis.orbit, u_axis.probe).sigma2.mean()
    s1 = oracle.estimate(np.zeros((40, 4, 4)), tilted.orbit, tilted.probe).sigma2.mean()
    assert s1 / s0 == pytest.approx(36.0, rel=0.35)       # RMS noise x (1 + 25 / 5) -> sigma^2 x 36
    with pytest.raises(GuidanceError, match='noise_tilt_deg'):
        OracleEstimator(noise_tilt_deg=-1.0)


def test_protocol_and_rate_errors_name_the_field():
    with pytest.raises(GuidanceError, match='runs'):
        GuidanceProtocol(runs=0)
    with pytest.raises(GuidanceError, match='max_seconds'):
        GuidanceProtocol(max_seconds=float('nan'))
    with pytest.raises(GuidanceError, match='turn_max_deg'):
        GuidanceProtocol(turn_max_deg=200.0)
    v = tiny_volume(0)
    specs = intra_specs(v, np.random.default_rng(0), GuidanceProtocol(runs=1), SECTOR)
    with pytest.raises(GuidanceError, match='stale_timeout'):
        guide(v, specs, OracleEstimator(), CONFIG, sector=SECTOR, rate_hz=2.0, max_seconds=1.0)


# -- statistics -------------------------------------------------------------------------------------

def test_bootstrap_interval_contains_the_statistic():
    x = np.random.default_rng(0).gamma(2.0, 2.0, 60)
    for fn in (np.mean, np.median, p90):
        lo, hi = bootstrap_ci(x, fn, n_boot=500)
        assert lo <= float(fn(x)) <= hi and lo < hi
    groups = np.repeat(np.arange(12), 5)
    lo, hi = bootstrap_ci(x, np.mean, groups=groups, n_boot=500)
    assert lo <= x.mean() <= hi
    assert bootstrap_ci(np.full(7, 3.0)) == (3.0, 3.0)
    with pytest.raises(StatsError, match='NaN'):
        bootstrap_ci([1.0, float('nan')])
    with pytest.raises(StatsError, match='groups'):
        bootstrap_ci([1.0, 2.0], groups=[0])


def test_spearman_of_monotone_relations():
    x = np.linspace(0.1, 5, 40)
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert spearman(x, -x ** 3) == pytest.approx(-1.0)
    assert spearman(x, np.ones_like(x)) is None
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 2, 3, float('nan'), 4], [2, 4, 6, 0, 8]) == pytest.approx(1.0)


def test_ecdf_and_success_rate():
    v, f = ecdf([3.0, 1.0, 2.0, 2.0])
    np.testing.assert_array_equal(v, [1, 2, 2, 3])
    np.testing.assert_allclose(f, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(success_rate([1.0, 4.0, 6.0, 12.0], [5.0, 10.0, 0.5]), [0.5, 0.75, 0.0])


# -- inter-patient rule on constructed runs ---------------------------------------------------------

def run_with(estimated_deg, final: Pose, converged=False, view='A4C', volume='v0') -> RunResult:
    e = np.asarray(estimated_deg, dtype=float)
    return RunResult(volume=volume, mode='inter', view=view, target_volume='v1', index=0, start=final,
                     target_true=None, final_pose=final, target_sigma2=0.0, actual_deg=np.full(e.size, np.nan),
                     estimated_deg=e, sigma2=np.zeros(e.size), states=np.ones(e.size, dtype=np.int8),
                     converged=converged, dt=0.1)


def turned(deg: float) -> Pose:
    return gauge_fix((rot_x(0.2), rot_y(0.1) @ rot_z(np.radians(deg))))


def test_convergence_rule_uses_the_final_window_or_the_state():
    ok = run_with([30] * 20 + [2] * 10, turned(0))              # last second within 5 deg
    late = run_with([2] * 26 + [9] * 4, turned(0))              # a late jump, median of the last second 2
    stuck = run_with([30] * 20 + [8] * 10, turned(0))           # stays above the threshold
    by_state = run_with([30] * 30, turned(0), converged=True)   # the controller said converged
    blind = run_with([np.nan] * 30, turned(0))                  # no estimate at all
    np.testing.assert_array_equal(converged_runs([ok, late, stuck, by_state, blind], 5.0, 1.0),
                                  [True, True, False, True, False])


def test_state_share_counts_steps_over_all_runs():
    a, b = run_with([1.0] * 4, turned(0)), run_with([1.0] * 6, turned(0))
    a.states[:] = [GuidanceState.HOLD_UNCERTAIN, GuidanceState.COASTING, GuidanceState.GUIDING,
                   GuidanceState.HOLD_UNCERTAIN]
    b.states[:] = GuidanceState.GUIDING
    assert state_share([a], GuidanceState.HOLD_UNCERTAIN) == 0.5
    assert state_share([a, b], GuidanceState.HOLD_UNCERTAIN) == pytest.approx(0.2)   # steps, not runs
    assert state_share([a, b], GuidanceState.COASTING) == pytest.approx(0.1)
    assert state_share([], GuidanceState.COASTING) == 0.0
    assert a.summary()['hold_share'] == 0.5 and a.summary()['coast_share'] == 0.25


def test_pair_kept_with_half_its_runs_and_dispersion():
    good = [run_with([1.0] * 10, turned(d)) for d in (-4.0, 4.0, 0.0)]
    bad = [run_with([20.0] * 10, turned(90.0)) for _ in range(3)]
    kept = inter_pair_summary(good + bad, [True] * 3 + [False] * 3)
    assert kept['kept'] and kept['convergent'] == 3
    # beam-axis turns of -4, 0, +4 deg about their mean: distances 4, 0, 4 -> mean 8/3
    assert kept['dispersion_deg'] == pytest.approx(8.0 / 3.0, abs=1e-6)
    dropped = inter_pair_summary(good[:2] + bad + bad[:1], [True] * 2 + [False] * 4)
    assert not dropped['kept'] and dropped['dispersion_deg'] is None
    same = Pose(np.stack([turned(5).orbit] * 3), np.stack([turned(5).probe] * 3))
    assert dispersion_deg(same) == pytest.approx(0.0, abs=1e-6)


def test_summarize_inter_discarded_share():
    runs = ([run_with([1.0] * 10, turned(d), view='A2C') for d in (0, 2, 4, 6)]            # kept
            + [run_with([1.0] * 10, turned(0), view='A3C')] + [run_with([30.0] * 10, turned(0), view='A3C')] * 3)
    s = summarize_inter(runs, GuidanceProtocol())
    assert s['pairs'] == 2 and s['discarded_pairs'] == 1 and s['discarded_share'] == 0.5
    assert s['per_view']['A3C']['discarded_share'] == 1.0 and s['per_view']['A3C']['mean_dispersion_deg'] is None
    assert s['mean_dispersion_deg'] == pytest.approx(2.0, abs=1e-3)    # turns 0..6 about mean 3: 3, 1, 1, 3


# -- misses on constructed runs --------------------------------------------------------------------

def intra_run(final: Pose, estimated_deg: float, hold: bool = False) -> RunResult:
    """A 10-step static run towards the identity pose that ends at ``final``."""
    target = Pose(np.eye(3), np.eye(3))
    actual = math.degrees(float(effective_error(final, target)))
    states = np.full(10, GuidanceState.HOLD_UNCERTAIN if hold else GuidanceState.GUIDING, dtype=np.int8)
    return RunResult(volume='v0', mode='static', view='', target_volume='v0', index=0, start=final,
                     target_true=target, final_pose=final, target_sigma2=0.0, actual_deg=np.full(10, actual),
                     estimated_deg=np.full(10, float(estimated_deg)), sigma2=np.zeros(10), states=states,
                     converged=False, dt=0.1)


def test_misses_are_split_by_what_the_estimator_believed_and_by_axis():
    tilt = intra_run(Pose(np.eye(3), rot_x(np.radians(12.0))), estimated_deg=1.0)     # quiet: believed arrived
    held = intra_run(Pose(np.eye(3), rot_z(np.radians(40.0))), estimated_deg=30.0, hold=True)
    flat = intra_run(Pose(np.eye(3), rot_y(np.radians(8.0))), estimated_deg=2.0, hold=True)  # believed, but held
    near = intra_run(Pose(np.eye(3), rot_x(np.radians(3.0))), estimated_deg=0.5)      # within 5: not a miss
    assert tilt.quiet_miss() and not held.quiet_miss() and not flat.quiet_miss() and not near.quiet_miss()
    apex, turn = tilt.final_error_parts_deg()
    assert apex == pytest.approx(0.0, abs=1e-9) and turn == pytest.approx([-12.0, 0.0, 0.0], abs=1e-9)  # to make
    m = summarize_misses([tilt, held, flat, near])
    assert m['runs'] == 3 and m['quiet'] == 1
    assert m['median_apex_deg'] == pytest.approx(0.0, abs=1e-9)
    assert m['median_turn_abs_xyz_deg'] == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)   # one axis each
    m2 = summarize_misses([tilt, tilt, held])
    assert m2['median_turn_abs_xyz_deg'] == pytest.approx([12.0, 0.0, 0.0], abs=1e-9)
    assert summarize_misses([near]) == {'tolerance_deg': 5.0, 'runs': 0, 'quiet': 0}


def test_report_says_how_runs_missed(tmp_path):
    tilt = intra_run(Pose(np.eye(3), rot_x(np.radians(12.0))), estimated_deg=1.0)
    runs = [tilt, intra_run(Pose(np.eye(3), rot_z(np.radians(40.0))), estimated_deg=30.0, hold=True)]
    ds = DatasetResult('made', ['v0'], runs, summarize_dataset(runs, GuidanceProtocol(n_boot=50)))
    text = write_report([ds], {'estimator': 'model'}, tmp_path / 'rep').read_text()
    assert '- static: 2 runs end beyond 5 deg, 1 of them quiet misses' in text
    assert 'probe turn |x| 6.0 / |y| 0.0 / |z| 20.0 deg' in text


# -- report and command -----------------------------------------------------------------------------

@pytest.mark.slow
def test_report_files_are_written(oracle_dataset, tmp_path):
    ds, protocol = oracle_dataset
    md = write_report([ds, ds], {'estimator': 'oracle', 'protocol': {'rate_hz': protocol.rate_hz}, 'wall_s': 1.0},
                      tmp_path / 'rep')
    text = md.read_text()
    for png in ('error_vs_time.png', 'error_cdf.png', 'success_vs_tolerance.png', 'sigma_vs_error.png'):
        f = tmp_path / 'rep' / png
        assert f.stat().st_size > 5000 and f.read_bytes()[:4] == b'\x89PNG'
        assert f'({png})' in text
    assert '## tiny' in text and 'intra-patient dynamic mean final error <= 4 deg' in text
    assert '| turn_z |' in text and 'median time to view' in text
    checks = {label: met for label, _, met in target_checks(ds.summary)}
    assert checks['intra-patient static mean final error <= 3 deg'] is True


def _save_tiny(folder, seeds):
    from echoposed_sim.volume_io import save_volume
    folder.mkdir()
    for s in seeds:
        save_volume(tiny_volume(s), folder / f'tiny{s}.npz')
    return folder


@pytest.mark.slow
def test_command_with_oracle_writes_json_and_report(tmp_path, capsys):
    from echoposed_ros.cli import main
    vols = _save_tiny(tmp_path / 'vols', (0, 1))
    out = tmp_path / 'g.json'
    controller = tmp_path / 'controller.yaml'
    # the harness with the coarse loop (smooth random volumes have no view to match)
    controller.write_text('echoposed_controller:\n  ros__parameters:\n    uncertainty_threshold: 0.37\n'
                          '    fine_enabled: false\n')
    rc = main(['eval', 'guidance', '--volumes', str(vols), '--oracle', '--runs', '1', '--inter-runs', '1',
               '--max-seconds', '10', '--json', str(out), '--report', str(tmp_path / 'rep'), '--quiet',
               '--controller', str(controller)])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc['controller']['uncertainty_threshold'] == 0.37 and doc['controller']['gain'] == CONFIG.gain
    ds = doc['datasets']['volumes vols']
    assert set(ds) >= {'intra_static', 'intra_dynamic', 'inter', 'sigma_error_spearman', 'source', 'run_table'}
    assert ds['intra_dynamic']['mean_deg'] < TOL_DEG + 0.5 and ds['inter']['pairs'] == 6
    assert doc['estimator'].startswith('oracle') and doc['controller']['gain'] == CONFIG.gain
    # the report names the settings the result depends on
    head = (tmp_path / 'rep' / 'guidance.md').read_text().split('\n## ')[0]
    assert '`uncertainty_threshold` 0.37 rad^2' in head and 'mirroring' not in head, head  # (models only)
    assert 'volumes vols: final error mean static' in capsys.readouterr().out


def test_command_with_an_onnx_model(tmp_path):
    from echoposed_ros.cli import main
    from echoposed_ros.estimator.synthetic import write_model
    model = write_model(tmp_path / 'syn.onnx', np.stack([np.eye(3)] * 3), np.stack([rot_z(0.1 * k) for k in range(3)]),
                        height=32, width=32)
    vols = _save_tiny(tmp_path / 'vols', (0,))
    out = tmp_path / 'g.json'
    rc = main(['eval', 'guidance', '--volumes', str(vols), '--model', str(model), '--runs', '1', '--no-mirror',
               '--max-seconds', '3', '--json', str(out), '--quiet', '--report', str(tmp_path / 'rep')])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc['model'] == str(model) and doc['sector']['height'] == 32
    head = (tmp_path / 'rep' / 'guidance.md').read_text().split('\n## ')[0]
    assert (f'(model `{model}`), test-time mirroring off, cycle fusion over 1 s; controller `uncertainty_threshold`'
            in head), head
    assert doc['fusion_window_s'] == 1.0     # the pose node's (config/pose.yaml)
    ds = doc['datasets']['volumes vols']
    assert ds['inter'] is None and ds['intra_static']['runs'] == 1
    # a constant estimator sees no error: the coarse stage ends at once, wherever the probe is, and the
    # image takes over (fine stage)
    assert all(r['final_state'] in ('fine_aligning', 'converged', 'mismatch') for r in ds['run_table'])
    assert all(r['fine_share'] > 0.5 for r in ds['run_table'])
    # --frame-size: frames cut larger, 8-bit, mapped onto the model by the estimator
    rc = main(['eval', 'guidance', '--volumes', str(vols), '--model', str(model), '--runs', '1', '--no-mirror',
               '--max-seconds', '3', '--json', str(out), '--quiet', '--frame-size', '48'])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc['sector']['height'] == doc['sector']['width'] == 48 and doc['estimator'].endswith('@48px')


def test_model_estimator_frames_are_quantised_and_mapped(tmp_path):
    from echoposed_ros.estimator import Estimator
    from echoposed_ros.estimator.synthetic import write_model
    from echoposed_ros.eval.guidance import GuidanceError, ModelEstimator
    model = write_model(tmp_path / 'syn.onnx', np.stack([np.eye(3)] * 3), np.stack([rot_z(0.1 * k) for k in range(3)]),
                        height=32, width=32)
    seen = []

    class Spy(Estimator):
        def estimate_batch(self, images, encodings=None, names=None):
            seen.append((images[0].dtype, images[0].shape, encodings))
            return super().estimate_batch(images, encodings, names)
    from echoposed_ros.estimator import model_fan
    est = ModelEstimator(Spy(model, fan='auto'), frame_size=64)
    assert (est.sector.height, est.sector.width) == (64, 64)
    fan = model_fan(64, 64, est.sector.angle_rad).mask((64, 64))
    frames = np.stack([np.where(fan, 0.5, 0.0)] * 2).astype(np.float32)
    est.estimate(frames, np.stack([np.eye(3)] * 2), np.stack([np.eye(3)] * 2))
    assert seen == [(np.uint8, (64, 64), ['mono8', 'mono8'])]
    with pytest.raises(GuidanceError, match='frame_size = 8'):
        ModelEstimator(Spy(model), frame_size=8)


def test_command_without_the_shipped_model_says_so(tmp_path, monkeypatch, capsys):
    from echoposed_ros.cli import main
    from echoposed_ros.estimator import model as model_module
    monkeypatch.setattr(model_module, 'default_model_path', lambda: tmp_path / 'models' / 'echoposed_k5.onnx')
    vols = _save_tiny(tmp_path / 'vols', (0,))
    rc = main(['eval', 'guidance', '--volumes', str(vols), '--json', str(tmp_path / 'g.json'), '--quiet'])
    err = capsys.readouterr().err
    assert rc == 2 and 'echoposed_k5.onnx' in err and 'not been trained' in err and '--oracle' in err
    rc = main(['eval', 'guidance', '--volumes', str(vols), '--model', str(tmp_path / 'nope.onnx'),
               '--json', str(tmp_path / 'g.json'), '--quiet'])
    assert rc == 2 and 'nope.onnx' in capsys.readouterr().err
    rc = main(['eval', 'guidance', '--oracle', '--json', str(tmp_path / 'g.json')])
    assert rc == 2 and 'no dataset' in capsys.readouterr().err
    assert not (tmp_path / 'g.json').exists()


def test_command_on_phantom_seeds_reads_the_phantom_cache(tmp_path):
    from echoposed_ros.cli import main
    from echoposed_sim.phantom import PhantomCache
    from echoposed_sim.volume_io import save_volume
    cache = PhantomCache(tmp_path / 'cache', frames=2)
    for seed in (7, 8):     # stand-ins stored under the patients' cache keys: nothing is generated
        save_volume(tiny_volume(seed), cache.path(seed))
    out = tmp_path / 'g.json'
    rc = main(['eval', 'guidance', '--seeds', '7-8', '--cache', str(tmp_path / 'cache'), '--frames', '2', '--oracle',
               '--runs', '1', '--inter-runs', '1', '--max-seconds', '8', '--json', str(out), '--quiet'])
    assert rc == 0
    ds = json.loads(out.read_text())['datasets']['phantom 7-8']
    assert ds['source'] == {'phantom_seeds': [7, 8], 'style': None, 'frames': 2}
    assert ds['volumes'] == ['tiny7', 'tiny8'] and ds['inter']['pairs'] == 6


def test_runs_are_reproducible_for_a_seed():
    v = tiny_volume(4)
    protocol = GuidanceProtocol(runs=1, max_seconds=6.0)
    out = []
    for _ in range(2):
        specs = intra_specs(v, np.random.default_rng([protocol.seed, 0, 0]), protocol, SECTOR)
        out.append(guide(v, specs, OracleEstimator(seed=9, noise_deg=1.0), CONFIG, sector=SECTOR, rate_hz=10.0,
                         max_seconds=6.0))
    for a, b in zip(*out):
        np.testing.assert_array_equal(a.actual_deg, b.actual_deg)
        np.testing.assert_array_equal(a.sigma2, b.sigma2)


def test_miss_auc_is_the_chance_a_miss_scores_above_an_arrival():
    from echoposed_ros.eval.guidance import miss_auc
    assert miss_auc([3, 2, 1, 0], [10, 9, 1, 0]) == 1.0          # both misses above both arrivals
    assert miss_auc([0, 1], [10, 1]) == 0.0
    assert miss_auc([1, 1, 0], [9, 1, 2]) == pytest.approx(0.75)  # one tie, one win
    assert miss_auc([1, 2], [1, 2]) is None                       # no miss at all
