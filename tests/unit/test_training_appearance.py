"""Randomised acquisition style of training slices (training/appearance.py)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from echoposed_ros.training.appearance import STYLE_RANGES, SliceStyle, apply_style, random_style
from echoposed_ros.training.config import TrainConfig
from echoposed_ros.training.data import VolumeSource, make_batch
from echoposed_ros.training.toy import toy_volume
from echoposed_sim.sector import SectorGeometry

SECTOR = SectorGeometry(np.deg2rad(75.0), 150.0, 48, 48)
NEUTRAL = SliceStyle(blur_axial_px=0.0, blur_lateral_px=0.0, tgc_db=0.0, gain_db=0.0, noise_db=-300.0, haze=0.0,
                     dynamic_range_db=55.0, gamma=1.0, shadow_p=0.0, dropout_p=0.0)


def _images(n=3):
    rng = np.random.default_rng(1)
    images = rng.uniform(0.05, 1.0, (n, 48, 48)).astype(np.float32)
    images[:, ~SECTOR.mask] = 0.0
    return images


def test_a_neutral_style_gives_the_slices_back():
    images = _images()
    out = apply_style(np.random.default_rng(0), images, SECTOR, NEUTRAL)
    np.testing.assert_allclose(out, images, atol=1e-5)


def test_styles_stay_in_range_keep_the_fan_and_are_deterministic():
    images = _images()
    for seed in range(20):
        style = random_style(np.random.default_rng(seed))
        for k, (lo, hi) in STYLE_RANGES.items():
            assert lo <= getattr(style, k) <= hi
        out = apply_style(np.random.default_rng(seed), images, SECTOR, style)
        again = apply_style(np.random.default_rng(seed), images, SECTOR, style)
        assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
        assert np.array_equal(out, again)
        assert not out[:, ~SECTOR.mask].any()


@pytest.mark.parametrize('change, darker_deep', [({'tgc_db': -12.0}, True), ({'tgc_db': 12.0}, False)])
def test_time_gain_compensation_changes_the_far_field(change, darker_deep):
    images = _images(1)
    out = apply_style(np.random.default_rng(0), images, SECTOR, dataclasses.replace(NEUTRAL, **change))
    deep = SECTOR.mask & (SECTOR.polar[0] > 120)
    assert (out[0][deep].mean() < images[0][deep].mean()) == darker_deep


def test_aug_style_draws_a_style_per_batch_and_leaves_configs_without_it_unchanged():
    toy = lambda key: toy_volume(0, n=20, frames=2, spacing=8.0)   # noqa: E731
    base = TrainConfig(input_size=32, poses=4, train_seeds='0', z_ramp_steps=0, phantom_cache_dir='', aug_grey=0.0,
                       aug_sector_crop=0.0)
    source = VolumeSource.from_config(base, toy)
    styled = base.replace(aug_style=1.0)
    a, b = make_batch(base, source, 3), make_batch(styled, source, 3)
    assert np.array_equal(a['probe'], b['probe']) and not np.array_equal(a['image'], b['image'])
    assert np.array_equal(make_batch(base.replace(aug_style=0.0), source, 3)['image'], a['image'])
    with pytest.raises(Exception, match='aug_style'):
        base.replace(aug_style=1.5)


def test_wide_motion_is_drawn_per_seed_within_its_ranges_and_reaches_the_phantom(monkeypatch, tmp_path):
    from echoposed_ros.training import data
    from echoposed_sim import phantom
    draws = [phantom.wide_motion(s) for s in range(200)]
    assert phantom.wide_motion(7) == draws[7]
    for k, (lo, hi) in phantom.WIDE_MOTION_RANGES.items():
        values = [d[k] for d in draws]
        assert lo <= min(values) and max(values) <= hi and max(values) - min(values) > 0.8 * (hi - lo)
    seen = {}
    monkeypatch.setattr(phantom, 'make_phantom', lambda seed, style, frames, heart=None: seen.setdefault(seed, heart))
    data.phantom_volume(3, frames=2, cache_dir=str(tmp_path), motion='wide')
    data.phantom_volume(4, frames=2, cache_dir=str(tmp_path))
    assert seen == {3: phantom.wide_motion(3), 4: None}
    assert sorted(p.name for p in tmp_path.iterdir()) == [f'phantom_default_{phantom.GENERATOR_VERSION}_f2_4.pkl',
                                                         f'phantom_default_wide_{phantom.GENERATOR_VERSION}_f2_3.pkl']
    with pytest.raises(Exception, match='phantom_motion'):
        TrainConfig().replace(phantom_motion='fast')


def test_random_style_is_drawn_per_seed_within_its_ranges_and_reaches_the_phantom(monkeypatch, tmp_path):
    from echoposed_ros.training import data
    from echoposed_sim import phantom
    draws = [phantom.random_style(s) for s in range(200)]
    assert phantom.random_style(7) == draws[7] and draws[7].name == 'random_7'
    for k, (lo, hi) in phantom.RANDOM_STYLE_RANGES.items():
        values = [getattr(d, k) for d in draws]
        assert lo <= min(values) and max(values) <= hi and max(values) - min(values) > 0.8 * (hi - lo)
    assert {d.voxel_mm for d in draws} == {1.0}
    with pytest.raises(phantom.PhantomError, match='seed'):
        phantom.random_style(-1)
    seen = {}
    monkeypatch.setattr(phantom, 'make_phantom', lambda seed, style, frames, heart=None: seen.setdefault(seed, style))
    data.phantom_volume(3, style='random', frames=2, cache_dir=str(tmp_path), motion='wide')
    data.phantom_volume(4, style='random', frames=2, cache_dir=str(tmp_path))
    assert seen == {3: phantom.random_style(3), 4: phantom.random_style(4)}
    assert data.resolve_style('random', 4) == phantom.random_style(4)
    with pytest.raises(Exception, match='needs the patient seed'):
        data.resolve_style('random')
    v = phantom.GENERATOR_VERSION
    d3, d4 = phantom.random_style(3).digest(), phantom.random_style(4).digest()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f'phantom_random-{d4}_{v}_f2_4.pkl',
                                                         f'phantom_random-{d3}_wide_{v}_f2_3.pkl']


def test_cached_patients_follow_the_style_file_not_its_name(tmp_path):
    """A style file edited between runs gives new patients: the cache key holds the style's digest."""
    from echoposed_ros.training import data
    from echoposed_sim import phantom
    style = tmp_path / 'mine.yaml'
    style.write_text('name: mine\nvoxel_mm: 3.0\ngain_db: 0\n')
    cache = tmp_path / 'cache'
    a = data.phantom_volume(2, style=str(style), frames=2, cache_dir=str(cache))
    again = data.phantom_volume(2, style=str(style), frames=2, cache_dir=str(cache))
    assert again.data.tobytes() == a.data.tobytes() and len(list(cache.iterdir())) == 1
    style.write_text('name: mine\nvoxel_mm: 3.0\ngain_db: 12\n')
    b = data.phantom_volume(2, style=str(style), frames=2, cache_dir=str(cache))
    assert len(list(cache.iterdir())) == 2
    assert b.meta['style']['gain_db'] == 12.0 and b.data.mean() > a.data.mean()
    assert b.data.tobytes() == phantom.make_phantom(2, phantom.load_style(style), 2).data.tobytes()


def test_random_share_draws_a_scanner_style_for_part_of_the_seeds(monkeypatch, tmp_path):
    from echoposed_ros.training import data
    from echoposed_sim import phantom
    picks = [data.seed_style(s, 'random:0.5') for s in range(400)]
    assert set(picks) == {'random', ''} and 0.4 < picks.count('random') / 400 < 0.6
    assert picks == [data.seed_style(s, 'random:0.5') for s in range(400)]          # the same every time
    assert data.seed_style(3, 'random') == 'random' and data.seed_style(3, 'vendor_b') == 'vendor_b'
    seen = {}
    monkeypatch.setattr(phantom, 'make_phantom', lambda seed, style, frames, heart=None: seen.setdefault(seed, style))
    randoms = [s for s in range(10) if picks[s] == 'random']
    defaults = [s for s in range(10) if picks[s] == '']
    for s in (randoms[0], defaults[0]):
        data.phantom_volume(s, style='random:0.5', frames=2, cache_dir=str(tmp_path))
    assert seen == {randoms[0]: phantom.random_style(randoms[0]), defaults[0]: None}
    v = phantom.GENERATOR_VERSION
    digest = phantom.random_style(randoms[0]).digest()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f'phantom_random-{digest}_{v}_f2_{randoms[0]}.pkl',
                                                                f'phantom_default_{v}_f2_{defaults[0]}.pkl'])
    for bad in ('random:0', 'random:1.5', 'random:half'):
        with pytest.raises(Exception, match='phantom_style'):
            TrainConfig().replace(phantom_style=bad)
