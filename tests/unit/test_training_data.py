"""Training data: pose sampling, curriculum, mirrors as poses, augmentation, the worker stream."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from echoposed_ros.geometry import angle, effective_error, swing_twist
from echoposed_ros.training.config import TrainConfig
from echoposed_ros.training.data import (BatchStream, VolumeSource, augment, loader, make_batch, sample_poses,
                                         z_range)
from echoposed_ros.training.toy import toy_volume
from echoposed_sim.sector import SectorGeometry
from echoposed_sim.slicer import slice_batch

TOY = functools.partial(toy_volume, n=20, frames=2, spacing=8.0)


def _cfg(**kw) -> TrainConfig:
    base = dict(train_seeds='0-1', input_size=32, poses=6, z_ramp_steps=10, workers=0)
    base.update(kw)
    return TrainConfig(**base)


def test_sampled_poses_are_canonical_and_within_ranges():
    rng = np.random.default_rng(0)
    R_v, R_p = sample_poses(rng, 200, np.eye(3), np.eye(3), np.deg2rad(30), np.deg2rad(20), np.deg2rad(20))
    _, tau = swing_twist(R_v)
    assert np.abs(tau).max() < 1e-9                      # orbit twist-free
    assert np.rad2deg(angle(R_v)).max() <= 20 + 1e-9     # orbit within range
    assert np.rad2deg(angle(R_p)).max() <= 30 + 2 * 20 + 1e-9
    # z turn spans the range: the probe's x axis turns up to about 30 degrees about z
    zturn = np.rad2deg(np.arctan2(R_p[:, 1, 0], R_p[:, 0, 0]))
    assert 20 < np.abs(zturn).max() < 55


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
