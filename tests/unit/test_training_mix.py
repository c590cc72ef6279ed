"""Mixed sources: a folder of own volumes and phantom patients in one run, with a weight per source."""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from echoposed_ros.cli import main
from echoposed_ros.training import TrainingError
from echoposed_ros.training.checkpoint import load_checkpoint
from echoposed_ros.training.config import TrainConfig
from echoposed_ros.training.data import BatchStream, VolumeSource, make_batch, volume_index
from echoposed_ros.training.toy import toy_volume
from echoposed_ros.training.train import train

TOY = functools.partial(toy_volume, n=20, frames=2, spacing=8.0)


def _toy(key):
    """Phantom seeds are ints, files are paths: a distinct toy volume for each."""
    return TOY(key if isinstance(key, int) else 1000 + len(str(key)))


@pytest.fixture
def folder(tmp_path):
    """Two 'own volume' files (never read: the factory stands in for the loader) and a sidecar."""
    d = tmp_path / 'own'
    d.mkdir()
    for name in ('a.npz', 'bb.npz'):
        (d / name).write_bytes(b'')
    (d / 'a.npz.yaml').write_text('spacing: [1, 1, 1]\n')
    return d


def _cfg(folder, weight, **kw) -> TrainConfig:
    base = dict(train_seeds='0-4', volumes_dir=str(folder), phantom_weight=weight, input_size=32, poses=4,
                z_ramp_steps=3, workers=0, phantom_cache_dir='')
    base.update(kw)
    return TrainConfig(**base)


def _source(cfg) -> VolumeSource:
    return VolumeSource.from_config(cfg, _toy)


@pytest.mark.parametrize('weight, phantoms', [(0.0, 0), (1.0, 200)])
def test_weights_one_and_zero_draw_from_one_source_only(folder, weight, phantoms):
    cfg = _cfg(folder, weight)
    src = _source(cfg)
    drawn = [volume_index(cfg, src, s) for s in range(200)]
    assert sum(src.is_phantom(i) for i in drawn) == phantoms
    # every volume of the source in use is drawn, none of the other
    assert len(set(drawn)) == (5 if phantoms else 2)


def test_even_weights_draw_each_source_in_about_half_the_steps_and_every_volume(folder):
    cfg = _cfg(folder, 0.5)
    src = _source(cfg)
    assert src.mixed and len(src) == 7
    drawn = [volume_index(cfg, src, s) for s in range(200)]
    n_phantom = sum(src.is_phantom(i) for i in drawn)
    assert 80 <= n_phantom <= 120            # binomial(200, 0.5): 100 +- 7 (sd)
    assert set(drawn) == set(range(7))
    # a quarter of phantoms draws fewer of them
    quarter = _cfg(folder, 0.25)
    fewer = _source(quarter)
    assert sum(fewer.is_phantom(volume_index(quarter, fewer, s)) for s in range(200)) < n_phantom - 30


def test_mixed_draws_are_deterministic_per_seed_step_and_rank_and_a_resume_sees_the_same_batches(folder):
    cfg = _cfg(folder, 0.5)
    src = _source(cfg)
    assert [volume_index(cfg, src, s) for s in range(50)] == [volume_index(cfg, _source(cfg), s) for s in range(50)]
    assert [volume_index(cfg, src, s, rank=1) for s in range(50)] != [volume_index(cfg, src, s) for s in range(50)]
    assert [volume_index(cfg, src, s) for s in range(50)] != [volume_index(cfg.replace(seed=1), src, s)
                                                                for s in range(50)]
    straight = list(BatchStream(cfg, 0, 6, 0, _toy))
    resumed = list(BatchStream(cfg, 3, 6, 0, _toy))
    for a, b in zip(straight[3:], resumed):
        assert a['step'] == b['step'] and a['volume'] == b['volume']
        assert torch.equal(a['image'], b['image'])
    a, b = make_batch(cfg, src, 4), make_batch(cfg, _source(cfg), 4)
    assert np.array_equal(a['image'], b['image']) and a['volume'] == b['volume']


def test_volume_reuse_keeps_source_and_volume_for_its_steps(folder):
    cfg = _cfg(folder, 0.5, volume_reuse=4)
    src = _source(cfg)
    drawn = [volume_index(cfg, src, s) for s in range(40)]
    assert all(len(set(drawn[i:i + 4])) == 1 for i in range(0, 40, 4))


def test_unmixed_sources_draw_as_before(folder):
    """Without a mix the volume is drawn as it always was: old runs keep their batches."""
    for cfg in (_cfg(folder, 0.0), TrainConfig(train_seeds='0-4', workers=0)):
        src = _source(cfg)
        before = [int(np.random.default_rng([cfg.seed, 7, s, 0]).integers(len(src))) for s in range(30)]
        assert [volume_index(cfg, src, s) for s in range(30)] == before


def test_describe_records_both_sources_and_their_weights(folder):
    desc = _source(_cfg(folder, 0.25)).describe()
    assert desc['kind'] == 'mixed'
    files, phantoms = desc['sources']
    assert files == {'kind': 'files', 'dir': str(folder), 'files': ['a.npz', 'bb.npz'], 'weight': 0.75}
    assert phantoms['kind'] == 'phantom' and phantoms['seeds'] == '0-4' and phantoms['weight'] == 0.25
    assert _source(_cfg(folder, 0.0)).describe()['kind'] == 'files'   # as before


def test_a_bad_weight_is_refused_with_what_was_expected(folder):
    with pytest.raises(TrainingError, match=r'phantom_weight=1.5: expected a probability in \[0, 1\]'):
        _cfg(folder, 1.5).validated()
    with pytest.raises(TrainingError, match=r'phantom_weight=0.5: expected 0 without volumes_dir'):
        TrainConfig(phantom_weight=0.5).validated()
    with pytest.raises(TrainingError, match='seed range'):
        _cfg(folder, 0.5, train_seeds='none').validated()
    with pytest.raises(TrainingError, match='give the phantom seeds'):
        VolumeSource(None, volumes_dir=str(folder), phantom_weight=0.5)


def test_a_mixed_run_trains_and_its_checkpoint_describes_the_mix(folder, tmp_path):
    cfg = _cfg(folder, 0.5, out_dir=str(tmp_path / 'out'), members=3, widths=(4, 4, 8, 8), steps=3, warmup_steps=1,
               log_every=1)
    _, _, _, raw = load_checkpoint(train(cfg, factory=_toy, progress=False))
    assert raw['step'] == 3 and [s['weight'] for s in raw['data']['sources']] == [0.5, 0.5]


@pytest.mark.parametrize('mix, weight', [('volumes=0.5,phantoms=0.5', 0.5), ('volumes=3,phantoms=1', 0.25),
                                         ('phantoms=2', 1.0), ('volumes=1, phantoms=0', 0.0)])
def test_the_mix_flag_sets_the_phantom_weight(folder, capsys, mix, weight):
    assert main(['train', '--volumes', str(folder), '--seeds', '0-39', '--mix', mix, '--print-config']) == 0
    assert json.loads(capsys.readouterr().out)['phantom_weight'] == pytest.approx(weight)


@pytest.mark.parametrize('mix', ['volumes=1,heart=1', 'volumes=-1,phantoms=1', 'volumes=0,phantoms=0', 'half'])
def test_a_bad_mix_flag_is_one_line_and_status_2(folder, capsys, mix):
    assert main(['train', '--volumes', str(folder), '--mix', mix, '--print-config']) == 2
    out = capsys.readouterr().out
    assert out.startswith('echoposed train: --mix') and out.count('\n') == 1
