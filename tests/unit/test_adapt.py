"""Adaptation from the robot's own motion: the sweep plan, labels from arm poses, recordings (sim, bag),
sweep batches, and a tiny fine-tune end to end."""
from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
from bag_helpers import T0
from scipy.spatial.transform import Rotation

from echoposed_ros.adapt import AdaptError
from echoposed_ros.adapt.labels import arm_to_labels, radial_error_m
from echoposed_ros.adapt.recording import Recording, holds_from_poses, load_recording, record_bag, record_sim
from echoposed_ros.adapt.sweep import SweepSettings, plan_sweep
from echoposed_ros.geometry import gauge_fix, probe_frame, rot_z, so3_exp
from echoposed_ros.training import TrainingError
from echoposed_ros.training.checkpoint import read_checkpoint
from echoposed_ros.training.config import TrainConfig
from echoposed_ros.training.data import Sweep, make_batch, sweep_batch
from echoposed_ros.training.toy import toy_volume

TOY = functools.partial(toy_volume, n=20, frames=2, spacing=8.0)


def _rel_angles(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Angles (rad) between the pair relations A_i^T A_j and B_i^T B_j over all pairs."""
    RA = np.swapaxes(A, 1, 2)[:, None] @ A[None]
    RB = np.swapaxes(B, 1, 2)[:, None] @ B[None]
    E = np.swapaxes(RA, -1, -2) @ RB
    return np.arccos(np.clip((np.trace(E, axis1=-2, axis2=-1) - 1) / 2, -1, 1))


# -- the plan ----------------------------------------------------------------------------------------


def test_default_plan_is_bounded_and_returns_to_the_start():
    s = SweepSettings()
    plan = plan_sweep(s)
    assert plan.duration_s <= 90.0
    assert np.all(plan.waypoints[0] == 0) and np.all(plan.waypoints[-1] == 0)
    assert np.abs(plan.waypoints[:, 0]).max() == pytest.approx(s.turn_max)
    assert np.abs(plan.waypoints[:, 1:3]).max() == pytest.approx(s.tilt)
    assert np.abs(plan.waypoints[:, 3:]).max() == pytest.approx(s.slide)
    # the planned offset is continuous, moves at most at the speed (norm of the five rates), and reaches
    # every waypoint when it arrives there
    dt = 1e-3
    t = np.arange(0, plan.duration_s + 1, dt)
    offsets = np.array([plan.offset_at(x) for x in t])
    assert np.linalg.norm(np.diff(offsets, axis=0), axis=1).max() / dt <= s.speed * (1 + 1e-6)
    for k, arrive in enumerate(plan.arrive):
        np.testing.assert_allclose(plan.offset_at(arrive), plan.waypoints[k], atol=1e-9)
    # every waypoint but the last is held for dwell_s
    held = np.array([plan.holding(x) for x in t])
    for k in range(len(plan.waypoints) - 1):
        assert (held == k).sum() * dt == pytest.approx(s.dwell_s, abs=2 * dt)


def test_a_plan_beyond_its_duration_or_with_bad_settings_is_refused():
    with pytest.raises(AdaptError, match='max_duration_s'):
        plan_sweep(SweepSettings(dwell_s=5.0))
    with pytest.raises(AdaptError, match='sweep setting speed'):
        SweepSettings(speed=0.0)
    with pytest.raises(AdaptError, match='turn_step'):
        SweepSettings(turn_step=math.nan)


# -- labels ------------------------------------------------------------------------------------------


def test_turns_and_tilts_about_the_apex_give_exact_labels_from_any_start():
    rng = np.random.default_rng(0)
    centre, radius = np.array([0.01, -0.02, 0.1]), 0.075
    R_v0 = so3_exp(np.array([0.2, -0.1, 0.0]))
    R_p0 = Rotation.random(random_state=1).as_matrix()   # any start, tilted or not
    deltas = np.concatenate([np.eye(3)[None], Rotation.from_rotvec(rng.normal(0, 0.4, (9, 3))).as_matrix()])
    R_p = R_p0 @ deltas
    R, apex = probe_frame(np.broadcast_to(R_v0, R_p.shape), R_p, centre, radius)
    orbit, probe = arm_to_labels(R, apex, radius)
    np.testing.assert_allclose(orbit, np.broadcast_to(np.eye(3), orbit.shape), atol=1e-9)
    np.testing.assert_allclose(probe, deltas, atol=1e-9)
    assert _rel_angles(probe, R_p).max() < 1e-7


def test_slides_from_a_start_facing_the_heart_give_the_truth_up_to_a_constant():
    rng = np.random.default_rng(2)
    centre, radius = np.array([0.0, 0.0, 0.08]), 0.07
    swings = so3_exp(np.concatenate([rng.normal(0, 0.08, (8, 2)), np.zeros((8, 1))], axis=1))
    swings[0] = np.eye(3)
    turns = Rotation.from_rotvec(rng.normal(0, 0.2, (8, 3))).as_matrix()
    turns[0] = np.eye(3)
    for R_v0, tol in ((np.eye(3), 1e-7), (so3_exp(np.array([0.15, 0.1, 0.0])), 0.02)):
        g = gauge_fix((R_v0 @ swings, turns))      # the start's beam through the centre (R_p0 = I)
        R, apex = probe_frame(g.orbit, g.probe, centre, radius)
        orbit, probe = arm_to_labels(R, apex, radius)
        # the same slices (effective pose relative to frame 0) ...
        assert np.allclose(orbit @ probe, np.swapaxes(R[0], 0, 1)[None] @ R, atol=1e-9)
        # ... and the truth's relations, exactly from the base pose, up to a small twist of the gauge otherwise
        assert _rel_angles(orbit, g.orbit).max() < tol and _rel_angles(probe, g.probe).max() < 2 * tol
        assert radial_error_m(apex, R[0], radius).max() < 1e-9


def test_bad_arm_poses_are_named():
    with pytest.raises(AdaptError, match='not a rotation'):
        arm_to_labels(np.stack([np.eye(3), 2 * np.eye(3)]), np.zeros((2, 3)), 0.07)
    with pytest.raises(AdaptError, match=r'\(N, 3\)'):
        arm_to_labels(np.stack([np.eye(3)] * 2), np.zeros((3, 3)), 0.07)
    with pytest.raises(AdaptError, match='orbit radius'):
        arm_to_labels(np.stack([np.eye(3)] * 2), np.zeros((2, 3)), 0.0)


# -- recordings --------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def sim_recording():
    vol = toy_volume(3, n=32, frames=4, spacing=5.0)
    plan = plan_sweep(SweepSettings(turn_max=math.radians(30), dwell_s=0.5, speed=0.8))
    return vol, plan, record_sim(vol, plan, (np.eye(3), np.eye(3)), size=48, rate_hz=20.0)


def test_a_simulated_sweep_follows_the_plan_and_its_labels_match_the_truth(sim_recording):
    vol, plan, rec = sim_recording
    assert len(rec) == math.ceil(plan.duration_s * 20) + 1
    assert rec.images.dtype == np.uint8 and rec.images.shape[1:] == (48, 48)
    assert set(rec.hold[rec.hold >= 0]) == set(range(len(plan.waypoints) - 1))
    orbit, probe = rec.labels()
    # the start is the base pose (beam through the centre): labels equal the truth's relations
    assert np.allclose(orbit[0], np.eye(3)) and np.allclose(probe[0], np.eye(3))
    turn = np.degrees(np.arctan2(probe[:, 1, 0], probe[:, 0, 0]))
    assert turn.min() == pytest.approx(-30, abs=1.0) and turn.max() == pytest.approx(30, abs=1.0)
    # the probe comes back where it began
    assert np.linalg.norm(rec.apex_m[-1] - rec.apex_m[0]) < 1e-4
    assert holds_from_poses(rec.orientation, rec.apex_m, rec.radius_m).max() + 1 == len(plan.waypoints) - 1


def test_a_recording_round_trips_and_a_bad_file_is_named(sim_recording, tmp_path):
    _, _, rec = sim_recording
    back = load_recording(rec.save(tmp_path / 'r.npz'))
    assert np.array_equal(back.images, rec.images) and np.allclose(back.orientation, rec.orientation)
    assert back.meta == rec.meta and back.radius_m == rec.radius_m
    (tmp_path / 'bad.npz').write_bytes(b'not a zip')
    with pytest.raises(AdaptError, match='bad.npz'):
        load_recording(tmp_path / 'bad.npz')
    with pytest.raises(AdaptError, match='orientation'):
        Recording(rec.images, rec.stamps_s, rec.orientation[:-1], rec.apex_m, rec.hold, rec.radius_m)


def _write_sweep_bag(path, n_images: int, pose_hz: float = 10.0, sweeping: tuple[int, int] | None = None):
    """Frames at 30 Hz on /probe/image, the arm's pose at pose_hz on /probe/pose turning about the beam at
    0.5 rad/s (apex fixed), in frame base_link; ``sweeping`` (first, last frame): /guidance/status in state
    sweeping with those frames, idle before and after."""
    from echoposed_ros.bag.typestore import typestore
    from echoposed_ros.bag.writer import BagWriter
    ts = typestore().types
    w = BagWriter(path)
    w.add_topic('/probe/image', 'sensor_msgs/msg/Image')
    w.add_topic('/probe/pose', 'geometry_msgs/msg/PoseStamped')
    if sweeping:
        w.add_topic('/guidance/status', 'echoposed_msgs/msg/GuidanceStatus')

    def header(t):
        return ts['std_msgs/msg/Header'](stamp=ts['builtin_interfaces/msg/Time'](sec=t // 10**9, nanosec=t % 10**9),
                                         frame_id='base_link')
    span = n_images / 30.0
    for k in range(int(span * pose_hz) + 2):
        t = T0 + int(k * 1e9 / pose_hz)
        q = Rotation.from_rotvec([0, 0, 0.5 * k / pose_hz]).as_quat()
        msg = ts['geometry_msgs/msg/PoseStamped'](header=header(t), pose=ts['geometry_msgs/msg/Pose'](
            position=ts['geometry_msgs/msg/Point'](x=0.1, y=0.2, z=0.3),
            orientation=ts['geometry_msgs/msg/Quaternion'](x=q[0], y=q[1], z=q[2], w=q[3])))
        w.write_message('/probe/pose', t, msg)
    for i in range(n_images):
        t = T0 + i * 10**9 // 30
        w.write_message('/probe/image', t, ts['sensor_msgs/msg/Image'](
            header=header(t), height=8, width=8, encoding='mono8', is_bigendian=0, step=8,
            data=np.full(64, i, np.uint8)))
        if sweeping:
            on = sweeping[0] <= i <= sweeping[1]
            w.write_message('/guidance/status', t + 1000, ts['echoposed_msgs/msg/GuidanceStatus'](
                header=header(t), state=12 if on else 0, state_name='sweeping' if on else 'idle', target='',
                effective_error=0.0, orbit_error=0.0, probe_error=0.0, uncertainty=0.0, view_match=0.0,
                disagree=False, frames_within_tolerance=0, cue=''))
    w.close()
    return path


def test_a_bag_of_a_live_adaptation_gives_the_sweep_span(tmp_path, capsys):
    from echoposed_ros.adapt.recording import sweep_span_s
    from echoposed_ros.cli import main
    bag = _write_sweep_bag(tmp_path / 'live', 60, sweeping=(15, 44))
    start, seconds = sweep_span_s(bag)
    assert start == pytest.approx(0.45, abs=1e-3) and seconds == pytest.approx(29 / 30 + 0.1, abs=1e-3)
    assert main(['adapt', '--bag', str(bag), '--out', str(tmp_path / 'a'), '--record-only']) == 0
    rec = load_recording(tmp_path / 'a' / 'recording.npz')
    assert rec.images[0, 0, 0] == 14 and rec.images[-1, 0, 0] == 45 and 'the recorded sweep' in capsys.readouterr().out
    assert sweep_span_s(_write_sweep_bag(tmp_path / 'plain', 10)) is None


def test_a_bag_sweep_pairs_each_frame_with_the_arm_pose_at_its_stamp(tmp_path):
    bag = _write_sweep_bag(tmp_path / 'sweep', 40)
    rec = record_bag(bag, radius_m=0.075)
    assert len(rec) == 40 and rec.meta['frame_id'] == 'base_link'
    assert np.array_equal(rec.images[:, 0, 0], np.arange(40))
    orbit, probe = rec.labels()
    turn = np.arctan2(probe[:, 1, 0], probe[:, 0, 0])
    np.testing.assert_allclose(turn, 0.5 * rec.stamps_s, atol=1e-6)   # interpolated between the 10 Hz poses
    np.testing.assert_allclose(orbit, np.broadcast_to(np.eye(3), orbit.shape), atol=1e-9)
    assert np.all(rec.hold == -1)                                     # always moving
    part = record_bag(bag, radius_m=0.075, start_s=0.5, seconds=0.5)
    assert len(part) == 15 and part.images[0, 0, 0] == 15


def test_a_bag_without_the_arm_pose_is_named(tmp_path):
    from bag_helpers import write_image_bag
    bag = write_image_bag(tmp_path / 'images', 5)
    with pytest.raises(AdaptError, match='/probe/pose'):
        record_bag(bag, radius_m=0.075)


# -- training on a sweep -----------------------------------------------------------------------------


def _sweep(n=12, size=32):
    rng = np.random.default_rng(0)
    hold = np.repeat(np.arange(n // 3), 3)
    probe = rot_z(np.repeat(np.linspace(-1, 1, n // 3), 3))
    return Sweep(rng.uniform(0, 1, (n, size, size)).astype(np.float32),
                 np.broadcast_to(np.eye(3), (n, 3, 3)).copy(), probe, hold)


def test_a_sweep_batch_pairs_frames_of_one_hold_and_adds_mirrors():
    cfg = TrainConfig(input_size=32, poses=8, sweep_file='x.npz', sweep_weight=1.0)
    sweep = _sweep()
    b = sweep_batch(cfg, sweep, step=3)
    assert b['image'].shape == (16, 1, 32, 32) and b['volume'] == -1
    # first half of the draws are partners of the second half: same hold -> same label
    np.testing.assert_allclose(b['probe'][:4], b['probe'][4:8])
    np.testing.assert_allclose(b['probe'][8:], b['probe'][:8] @ rot_z(np.pi))
    np.testing.assert_allclose(b['image'][8:, 0], b['image'][:8, 0, :, ::-1])
    assert sweep_batch(cfg, sweep, step=3)['probe'].tolist() == b['probe'].tolist()   # deterministic


def test_sweep_batches_take_their_share_and_leave_other_configs_unchanged(tmp_path):
    from echoposed_ros.training.data import VolumeSource
    s = _sweep()
    path = tmp_path / 'sweep.npz'
    np.savez(path, images=s.images, orbit=s.orbit, probe=s.probe, hold=s.hold)
    base = TrainConfig(input_size=32, poses=4, train_seeds='0-1', z_ramp_steps=0, phantom_cache_dir='')
    cfg = base.replace(sweep_file=str(path), sweep_weight=0.5)
    source = VolumeSource.from_config(base, TOY)
    kinds = [make_batch(cfg, source, step)['volume'] == -1 for step in range(40)]
    assert 10 <= sum(kinds) <= 30
    for step in range(40):
        if not kinds[step]:
            assert np.array_equal(make_batch(cfg, source, step)['image'], make_batch(base, source, step)['image'])
    with pytest.raises(TrainingError, match='sweep_weight'):
        TrainConfig().replace(sweep_weight=0.5)
    bad = base.replace(sweep_file=str(tmp_path / 'none.npz'), sweep_weight=1.0)
    with pytest.raises(TrainingError, match='none.npz'):
        make_batch(bad, source, 0)


def test_a_teacher_reads_the_phantom_steps_of_an_adaptation_and_not_the_sweep(tmp_path):
    from echoposed_ros.adapt.finetune import AdaptSettings, adapt_config
    from echoposed_ros.training.train import train
    s = _sweep()
    path = tmp_path / 'sweep.npz'
    np.savez(path, images=s.images, orbit=s.orbit, probe=s.probe, hold=s.hold)
    src = train(TrainConfig(out_dir=str(tmp_path / 'src'), train_seeds='0-1', input_size=32, poses=4, members=3,
                            widths=(4, 4, 8, 8), steps=2, warmup_steps=1, z_ramp_steps=0, workers=0,
                            phantom_cache_dir=''), factory=TOY, progress=False)
    cfg = adapt_config(src, path, tmp_path / 'adapt', AdaptSettings(steps=12, workers=0, phantom_seeds='0-1',
                                                                    holdout=0.0, distill=2.0), cache_dir='')
    assert cfg.distill_weight == 2.0 and cfg.init_from == str(src)
    logs = []
    train(cfg.replace(log_every=1), factory=TOY, progress=False, on_log=logs.append)
    from echoposed_ros.training.data import VolumeSource
    source = VolumeSource.from_config(cfg, TOY)
    on_sweep = [make_batch(cfg, source, r['step'] - 1)['volume'] == -1 for r in logs]
    assert len(logs) == 12 and 0 < sum(on_sweep) < 12
    assert [('distill' in r) for r in logs] == [not x for x in on_sweep]
    with pytest.raises(AdaptError, match='distill'):
        AdaptSettings(distill=-1.0)
    with pytest.raises(AdaptError, match='blend'):
        AdaptSettings(blend=1.5)


def test_held_out_holds_are_spread_over_the_sweep_and_never_drawn():
    rng = np.random.default_rng(1)
    hold = np.concatenate([np.repeat(np.arange(27), 5), [-1, -1]])
    n = len(hold)
    sweep = Sweep(rng.uniform(0, 1, (n, 32, 32)).astype(np.float32), np.broadcast_to(np.eye(3), (n, 3, 3)).copy(),
                  rot_z(np.linspace(-1, 1, n)), hold, holdout=0.25)
    kept_out = np.unique(hold[sweep.val])
    assert kept_out.tolist() == [3, 7, 11, 15, 19, 23]                     # one in four, spread over the ladder
    assert np.intersect1d(sweep.train, sweep.val).size == 0 and len(sweep.train) + len(sweep.val) == n
    assert set(hold[sweep.train]) == set(range(27)) - set(kept_out.tolist()) | {-1}
    cfg = TrainConfig(input_size=32, poses=8, sweep_file='x.npz', sweep_weight=1.0, sweep_holdout=0.25)
    drawn = set()
    for step in range(60):
        b = sweep_batch(cfg, sweep, step)
        drawn |= {round(float(np.arctan2(r[1, 0], r[0, 0])), 9) for r in b['probe'][:8]}
    val_turns = {round(float(a), 9) for a in np.linspace(-1, 1, n)[sweep.val]}
    assert drawn and not drawn & val_turns
    plain = Sweep(sweep.images, sweep.orbit, sweep.probe, hold)
    assert len(plain.val) == 0 and np.array_equal(plain.train, np.arange(n))
    with pytest.raises(TrainingError, match='sweep_holdout'):
        TrainConfig().replace(sweep_holdout=0.25)
    with pytest.raises(TrainingError, match='sweep_holdout'):
        cfg.replace(sweep_holdout=0.7)


def test_relative_pose_error_ignores_a_common_frame_and_sees_one_bad_pose():
    from echoposed_ros.geometry import rot_x
    from echoposed_ros.training.sweep_check import relative_pose_error_deg
    hold = np.array([0, 0, 1, 1, 2, 2])
    probe = rot_z(np.deg2rad([0, 0, 15, 15, 30, 30]))
    orbit = np.broadcast_to(np.eye(3), (6, 3, 3)).copy()
    assert relative_pose_error_deg(orbit, probe, orbit, probe, hold) == pytest.approx(0, abs=1e-6)
    gauge = rot_x(0.4) @ rot_z(1.0)                                   # the estimates in another common frame
    assert relative_pose_error_deg(gauge @ orbit, probe, orbit, probe, hold) == pytest.approx(0, abs=1e-6)
    bad = probe.copy()
    bad[4:] = probe[4:] @ rot_z(np.deg2rad(10))                       # hold 2 read 10 deg off
    # 12 pairs at different holds, 8 of them involve hold 2
    assert relative_pose_error_deg(orbit, bad, orbit, probe, hold) == pytest.approx(10 * 8 / 12, abs=1e-6)
    assert np.isnan(relative_pose_error_deg(orbit[:2], probe[:2], orbit[:2], probe[:2], hold[:2]))


@pytest.mark.slow
def test_adapt_model_fine_tunes_on_the_sweep_and_exports(sim_recording, tmp_path):
    from echoposed_ros.adapt.finetune import AdaptSettings, adapt_model
    from echoposed_ros.estimator import Estimator
    from echoposed_ros.training.export import export_onnx
    from echoposed_ros.training.train import train
    base = TrainConfig(out_dir=str(tmp_path / 'base'), train_seeds='0-1', input_size=32, poses=4, members=3,
                       widths=(4, 4, 8, 8), steps=4, warmup_steps=2, z_ramp_steps=0, workers=0, phantom_cache_dir='')
    model = export_onnx(train(base, factory=TOY, progress=False), tmp_path / 'base.onnx', pin_batches=2, factory=TOY)
    _, _, rec = sim_recording
    out = adapt_model(rec, model, tmp_path / 'adapt', AdaptSettings(steps=6, workers=0, phantom_seeds='0-1',
                                                                    check_every=3, blend=0.5),
                      cache_dir='', factory=TOY)
    record = json.loads((tmp_path / 'adapt' / 'adapt.json').read_text())
    assert record['steps'] == 6 and record['sweep']['frames'] == len(rec)
    # a quarter of the holds checked every 3 steps; the exported checkpoint is the best of them
    check = record['sweep_check']
    assert check['holds'] >= 2 and check['best_deg'] <= check['start_deg'] and check['best_step'] in (0, 3, 6)
    assert read_checkpoint(tmp_path / 'adapt' / 'best.pt')[1]['step'] == check['best_step']
    # the exported weights: halfway between the best checkpoint and the model it started from
    assert read_checkpoint(tmp_path / 'adapt' / 'blended.pt')[1]['blend'] == {'alpha': 0.5, 'original': str(model)}
    assert record['settings']['blend'] == 0.5
    log = (tmp_path / 'adapt' / 'train.log').read_text()
    assert log.count('sweep_check_deg=') == 2 and '-> best.pt' in log
    cfg = json.loads((tmp_path / 'adapt' / 'config.json').read_text())
    assert cfg['sweep_weight'] == 0.5 and cfg['init_from'] == str(model) and cfg['widths'] == [4, 4, 8, 8]
    est = Estimator(out)
    orbit, probe, sigma2 = est.predict(np.load(tmp_path / 'adapt' / 'sweep.npz')['images'][:3])
    assert orbit.shape == (3, 3, 3) and np.all(np.isfinite(sigma2))


def test_the_command_records_a_bag_sweep_and_names_a_missing_pose_topic(tmp_path, capsys):
    from bag_helpers import write_image_bag

    from echoposed_ros.cli import main
    bag = _write_sweep_bag(tmp_path / 'sweep', 30)
    assert main(['adapt', '--bag', str(bag), '--out', str(tmp_path / 'a'), '--record-only']) == 0
    rec = load_recording(tmp_path / 'a' / 'recording.npz')
    assert len(rec) == 30 and rec.meta['source'] == 'bag'
    plain = write_image_bag(tmp_path / 'plain', 5)
    assert main(['adapt', '--bag', str(plain), '--out', str(tmp_path / 'b')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('echoposed adapt: ') and '/probe/pose' in err and len(err.strip().splitlines()) == 1
