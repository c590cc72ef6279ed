"""Training data: pose sampling, curriculum, mirrors as poses, augmentation, the worker stream."""
from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from echoposed_ros.geometry import angle, effective_error, gauge_fix, rot_x, rot_y, rot_z, swing_twist
from echoposed_ros.training import TrainingError
from echoposed_ros.training.config import TrainConfig
from echoposed_ros.training.data import BatchStream, VolumeSource, augment, loader, make_batch, z_range
from echoposed_ros.training.toy import toy_volume
from echoposed_sim.sampling import sample_poses
from echoposed_sim.sector import SectorGeometry
from echoposed_sim.slicer import slice_batch

TOY = functools.partial(toy_volume, n=20, frames=2, spacing=8.0)


def _cfg(**kw) -> TrainConfig:
    base = dict(train_seeds='0-1', input_size=32, poses=6, z_ramp_steps=10, workers=0)
    base.update(kw)
    return TrainConfig(**base)


def _sample_poses_before(rng, n, base_orbit, base_probe, z_half, tilt, orbit_max):
    """Training's own pose sampler before it used echoposed_sim.sampling (draws in this order)."""
    phi = rng.uniform(0, 2 * np.pi, n)
    ang = rng.uniform(0, orbit_max, n)
    axes = np.stack([np.cos(phi), np.sin(phi), np.zeros(n)], -1)
    R_v = base_orbit @ Rotation.from_rotvec(axes * ang[:, None]).as_matrix()
    gz, gx, gy = rng.uniform(-z_half, z_half, n), rng.uniform(-tilt, tilt, n), rng.uniform(-tilt, tilt, n)
    g = gauge_fix((R_v, base_probe @ rot_z(gz) @ rot_x(gx) @ rot_y(gy)))
    return np.asarray(g.orbit), np.asarray(g.probe)


def test_training_draws_the_same_poses_as_before_the_shared_sampler():
    """A training re-run or resume sees the batches earlier runs saw (to rounding)."""
    base = (Rotation.from_rotvec([0.1, -0.2, 0.3]).as_matrix(), Rotation.from_rotvec([0.4, 0.1, -0.5]).as_matrix())
    old = _sample_poses_before(np.random.default_rng(5), 64, *base, np.pi, np.deg2rad(20), np.deg2rad(20))
    new = sample_poses(np.random.default_rng(5), 64, *base, orbit_max=np.deg2rad(20), tilt_max=np.deg2rad(20),
                       turn_max=np.pi)
    assert np.allclose(old[0], new[0], atol=1e-12) and np.allclose(old[1], new[1], atol=1e-12)


def test_sampled_poses_are_canonical_and_within_ranges():
    rng = np.random.default_rng(0)
    R_v, R_p = sample_poses(rng, 200, np.eye(3), np.eye(3), orbit_max=np.deg2rad(20), tilt_max=np.deg2rad(20),
                            turn_max=np.deg2rad(30))
    _, tau = swing_twist(R_v)
    assert np.abs(tau).max() < 1e-9                      # orbit twist-free
    assert np.rad2deg(angle(R_v)).max() <= 20 + 1e-9     # orbit within range
    assert np.rad2deg(angle(R_p)).max() <= 30 + 2 * 20 + 1e-9
    # z turn spans the range: the probe's x axis turns up to about 30 degrees about z
    zturn = np.rad2deg(np.arctan2(R_p[:, 1, 0], R_p[:, 0, 0]))
    assert 20 < np.abs(zturn).max() < 55


def _turns_deg(base_probe, R_p):
    """Turn about z (deg) of each probe relative to the base, for poses with no tilt."""
    rel = np.swapaxes(base_probe, -1, -2) @ R_p
    assert np.allclose(rel[:, 2, 2], 1.0, atol=1e-9)      # a pure turn about z
    return np.rad2deg(np.arctan2(rel[:, 1, 0], rel[:, 0, 0]))


def test_clustered_turns_come_in_groups_a_few_degrees_apart():
    rng = np.random.default_rng(3)
    _, R_p = sample_poses(rng, 16, np.eye(3), np.eye(3), orbit_max=0.0, tilt_max=0.0, turn_max=np.pi,
                          turn_clusters=4, cluster_width=np.deg2rad(5))
    z = _turns_deg(np.eye(3), R_p)
    for c in range(4):
        group = z[c::4]
        spread = np.rad2deg(np.abs(np.angle(np.exp(1j * np.deg2rad(group[:, None] - group[None])))))
        assert spread.max() <= 10 + 1e-9, (c, group)
    centres = np.rad2deg(np.angle(np.exp(1j * np.deg2rad(z[:4]))))
    assert np.ptp(centres) > 30                               # the clusters themselves are spread out
    # independent turns (the default) have no such groups: the same check fails for them
    _, R_p = sample_poses(np.random.default_rng(3), 16, np.eye(3), np.eye(3), orbit_max=0.0, tilt_max=0.0)
    z = _turns_deg(np.eye(3), R_p)
    assert max(np.ptp(z[c::4]) for c in range(4)) > 10
    with pytest.raises(ValueError, match='turn_clusters = 17'):
        sample_poses(rng, 16, turn_clusters=17)
    with pytest.raises(ValueError, match='cluster_width = -0.1'):
        sample_poses(rng, 16, turn_clusters=2, cluster_width=-0.1)


def test_training_batches_use_clustered_turns_when_configured():
    src = VolumeSource([0, 1], factory=TOY)
    cfg = _cfg(z_ramp_steps=0, poses=8, tilt_deg=0.0, orbit_deg=0.0, turn_clusters=2, cluster_deg=3.0,
               mirrors=False)
    b = make_batch(cfg, src, 5)
    z = _turns_deg(src.get(b['volume']).base_probe, b['probe'])
    assert all(np.ptp(np.unwrap(np.deg2rad(z[c::2]))) <= np.deg2rad(6) + 1e-9 for c in range(2)), z
    plain = make_batch(replace(cfg, turn_clusters=0), src, 5)
    assert not np.allclose(plain['probe'], b['probe'])
    with pytest.raises(TrainingError, match='turn_clusters=9'):
        replace(cfg, turn_clusters=9).validated()


def test_phase_pairs_repeat_poses_at_new_phases_and_leave_other_draws_alone():
    src = VolumeSource([0, 1], factory=TOY)
    cfg = _cfg(z_ramp_steps=0, poses=8, mirrors=False, aug_zoom=0.0, aug_grey=0.0, aug_sector_crop=0.0)
    plain, twins = make_batch(cfg, src, 5), make_batch(replace(cfg, phase_pairs=0.25), src, 5)
    np.testing.assert_array_equal(twins['probe'][-2:], twins['probe'][:2])
    np.testing.assert_array_equal(twins['orbit'][-2:], twins['orbit'][:2])
    assert np.all(twins['t'][-2:] != twins['t'][:2])
    # the same pose at another phase shows the heart elsewhere in its cycle: a different image
    assert not np.array_equal(twins['image'][-2:], twins['image'][:2])
    # the other poses, phases and images are those of the batch without twins
    np.testing.assert_array_equal(twins['probe'][:6], plain['probe'][:6])
    np.testing.assert_array_equal(twins['t'][:6], plain['t'][:6])
    np.testing.assert_array_equal(twins['image'][:6], plain['image'][:6])
    with pytest.raises(TrainingError, match='phase_pairs=0.75'):
        replace(cfg, phase_pairs=0.75).validated()


def test_curriculum_widens_to_the_full_circle():
    cfg = _cfg(z_start_deg=30, z_ramp_steps=100)
    assert z_range(cfg, 0) == pytest.approx(np.deg2rad(30))
    assert np.deg2rad(30) < z_range(cfg, 50) < np.pi
    assert z_range(cfg, 100) == z_range(cfg, 5000) == pytest.approx(np.pi)


def test_batches_are_deterministic_per_step_and_mirrors_are_poses():
    cfg = _cfg(z_ramp_steps=0, aug_zoom=0.0, aug_grey=0.0, aug_sector_crop=0.0)
    src = VolumeSource([0, 1], factory=TOY)
    a, b, c = make_batch(cfg, src, 3), make_batch(cfg, src, 3), make_batch(cfg, src, 4)
    assert np.array_equal(a['image'], b['image']) and not np.array_equal(a['image'], c['image'])
    n = cfg.poses
    img = a['image'][:, 0]
    assert img.shape == (2 * n, 32, 32) and a['probe'].shape == (2 * n, 3, 3)
    np.testing.assert_array_equal(img[n:], img[:n, :, ::-1])
    # the mirror really is the slice at (R_v, R_p Rz(pi)): fliplr(slice(g)) == slice(mirror pose)
    vol = src.get(a['volume'])
    sector = SectorGeometry(np.deg2rad(cfg.sector_angle_deg), cfg.sector_depth_mm, 32, 32)
    direct = slice_batch(vol, a['orbit'][n:], a['probe'][n:], a['t'][n:], sector)
    np.testing.assert_allclose(direct, img[n:], atol=1e-5)
    # same effective view family: the mirror pose is a half turn about the beam from the original
    assert np.allclose(effective_error((a['orbit'][:n], a['probe'][:n]), (a['orbit'][n:], a['probe'][n:])), np.pi)


def test_resample_augmentation_feeds_slices_as_the_pose_node_maps_a_finer_frame():
    cfg = _cfg(z_ramp_steps=0, aug_zoom=0.0, aug_grey=0.0, aug_sector_crop=0.0)
    src = VolumeSource([0, 1], factory=TOY)
    plain, resampled = make_batch(cfg, src, 5), make_batch(cfg.replace(aug_resample=1.0), src, 5)
    for key in ('orbit', 'probe', 't', 'volume'):   # same draws up to the images
        assert np.array_equal(plain[key], resampled[key]), key
    a, b = plain['image'][:, 0], resampled['image'][:, 0]
    assert b.shape == a.shape and not np.array_equal(a, b)
    assert np.abs(a - b).mean() < 0.1 * a.mean()     # the same views, resampled
    n = cfg.poses
    np.testing.assert_array_equal(b[n:], b[:n, :, ::-1])   # the mapping keeps mirrors exact
    from echoposed_ros.estimator.fan import model_fan
    outside = ~model_fan(32, 32, np.deg2rad(cfg.sector_angle_deg)).mask((32, 32))
    assert outside.any() and np.all(b[:, outside] == 0)   # nothing outside the model's fan


def test_resampled_like_runtime_equals_the_estimators_own_mapping():
    from echoposed_ros.estimator import image as runtime
    from echoposed_ros.estimator.fan import model_fan
    from echoposed_ros.training.data import resampled_like_runtime

    sector = SectorGeometry(np.deg2rad(75), 150.0, 32, 32)
    vol = TOY(0)
    wide = SectorGeometry(np.deg2rad(75), 150.0, 80, 80)
    fine = slice_batch(vol, np.eye(3)[None], np.eye(3)[None], np.zeros(1), wide)
    ours = resampled_like_runtime(fine, sector)[0]
    mono8 = np.round(fine[0] * 255).astype(np.uint8)
    theirs = runtime.map_to_model(runtime.image_to_float(mono8, 'mono8'), model_fan(80, 80, np.deg2rad(75)),
                                  model_fan(32, 32, np.deg2rad(75)), (32, 32))
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_no_mirrors_before_the_full_circle():
    cfg = _cfg(z_ramp_steps=100)
    b = make_batch(cfg, VolumeSource([0], factory=TOY), 0)
    assert b['image'].shape[0] == cfg.poses


def test_augmentation_keeps_the_sector_mask_and_range():
    cfg = _cfg(aug_sector_crop=1.0, aug_grey=1.0)
    sector = SectorGeometry(np.deg2rad(75), 150.0, 32, 32)
    rng = np.random.default_rng(1)
    imgs = rng.uniform(0, 1, (5, 32, 32)).astype(np.float32) * sector.mask
    out = augment(rng, imgs.copy(), sector, cfg)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert np.all(out[:, ~sector.mask] == 0)
    assert not np.allclose(out, imgs)


def test_worker_stream_yields_steps_in_order(tmp_path):
    cfg = _cfg(workers=2)
    steps = [int(b['step']) for b in loader(cfg, 5, 11, 0, TOY)]
    assert steps == list(range(5, 11))
    inline = list(BatchStream(_cfg(), 5, 7, 0, TOY))
    assert [int(b['step']) for b in inline] == [5, 6]


def test_volume_source_describes_its_data(tmp_path):
    src = VolumeSource([3, 4, 5], style='vendor_b', factory=TOY)
    assert src.describe() == {'kind': 'phantom', 'seeds': '3-5', 'style': 'vendor_b', 'frames': 5,
                              'generator_version': 0}
    with pytest.raises(ValueError, match='not a folder'):
        VolumeSource(volumes_dir=str(tmp_path / 'nope'))


def test_a_teacher_reads_the_same_slices_of_the_patient_in_the_default_style(monkeypatch, tmp_path):
    """distill_weight > 0: 'clean' holds the slices of the batch's poses and phases, cut from the seed's
    default-style patient when it was drawn in another style, else the slices before any augmentation."""
    from echoposed_ros.training import data
    from echoposed_sim import phantom

    def fake(seed, style, frames, heart=None):        # a styled patient: the same toy heart, grey levels flipped
        v = toy_volume(seed, n=20, frames=frames, spacing=8.0)
        return v if style is None else replace(v, data=(1.0 - v.data).astype(np.float32))

    monkeypatch.setattr(phantom, 'make_phantom', fake)
    cfg = _cfg(train_seeds='0-9', phantom_style='random:0.5', phantom_frames=2, phantom_cache_dir=str(tmp_path),
               init_from='teacher.onnx', distill_weight=1.0, z_ramp_steps=0)
    source = VolumeSource.from_config(cfg)
    assert 'clean' not in make_batch(cfg.replace(distill_weight=0.0), source, 0, augmentation=False)
    seen = set()
    for step in range(12):
        b = make_batch(cfg, source, step, augmentation=False)
        seed = source.seeds[b['volume']]
        assert b['clean'].shape == b['image'].shape and b['clean'].dtype == np.float32
        n = len(b['t']) // 2
        sector = SectorGeometry(np.deg2rad(cfg.sector_angle_deg), cfg.sector_depth_mm, 32, 32)
        default = slice_batch(fake(seed, None, 2), b['orbit'][:n], b['probe'][:n], b['t'][:n], sector)
        np.testing.assert_allclose(b['clean'][:n, 0], default, atol=1e-6)
        np.testing.assert_allclose(b['clean'][n:, 0], default[:, :, ::-1], atol=1e-6)   # the mirrors too
        styled = data.seed_style(seed, cfg.phantom_style) == 'random'
        assert np.array_equal(b['clean'], b['image']) != styled
        seen.add(styled)
    assert seen == {True, False}
    # distill_phases 3: three blocks, the poses at their own phase, a third and two thirds of a cycle on
    b = make_batch(cfg.replace(distill_phases=3), source, 5, augmentation=False)
    m = len(b['t'])
    assert b['clean'].shape == (3 * m, 1, 32, 32)
    seed = source.seeds[b['volume']]
    for j in range(3):
        want = slice_batch(fake(seed, None, 2), b['orbit'][:n], b['probe'][:n], (b['t'][:n] + j / 3) % 1.0, sector)
        np.testing.assert_allclose(b['clean'][j * m:j * m + n, 0], want, atol=1e-6)
        np.testing.assert_allclose(b['clean'][j * m + n:(j + 1) * m, 0], want[:, :, ::-1], atol=1e-6)
    # grey remaps and crops change the student's images, not the teacher's (a zoom changes both: the same slice)
    cfg = cfg.replace(aug_zoom=0.0, aug_grey=1.0, aug_sector_crop=1.0)
    b, plain = make_batch(cfg, source, 3), make_batch(cfg, source, 3, augmentation=False)
    assert np.array_equal(b['clean'], plain['clean']) and not np.array_equal(b['image'], plain['image'])
    # a batch resampled like a runtime frame: the teacher still reads the direct slices
    cfg = cfg.replace(aug_grey=0.0, aug_sector_crop=0.0, aug_resample=1.0)
    for step in range(4):
        b, plain = make_batch(cfg, source, step), make_batch(cfg, source, step, augmentation=False)
        assert np.array_equal(b['clean'], plain['clean']) and not np.array_equal(b['image'], plain['image'])


def test_a_sweep_batch_has_no_teacher_images(tmp_path):
    """The patient's own frames are learnt freely: the teacher only holds what the volumes taught."""
    from echoposed_ros.training.data import Sweep, sweep_batch
    rng = np.random.default_rng(0)
    n = 12
    sweep = Sweep(rng.uniform(0, 1, (n, 32, 32)).astype(np.float32), np.stack([np.eye(3)] * n),
                  np.stack([rot_z(0.1 * i) for i in range(n)]), np.repeat(np.arange(4), 3))
    b = sweep_batch(_cfg(init_from='teacher.onnx', distill_weight=1.0), sweep, 0)
    assert 'clean' not in b and b['image'].shape == (12, 1, 32, 32)
