"""`echoposed train` / `echoposed export` argument handling, and the quick calibration's scoring."""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from echoposed_ros.cli import main
from echoposed_ros.training.checkpoint import build_model
from echoposed_ros.training.config import TrainConfig
from echoposed_ros.training.quickcal import _maae, quick_calibration
from echoposed_ros.training.toy import toy_volume
from echoposed_ros.training.train import train

TOY = functools.partial(toy_volume, n=20, frames=2, spacing=8.0)


def test_print_config_applies_flags_and_set(tmp_path, capsys):
    cfg_file = tmp_path / 'c.json'
    cfg_file.write_text(TrainConfig(w_orbit=7.0).to_json())
    rc = main(['train', '--config', str(cfg_file), '--seeds', '3-9', '--members', '4', '--minutes', '2',
               '--set', 'z_ramp_steps=10', 'widths=[8,8,16,16]', '--print-config'])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out['train_seeds'] == '3-9' and out['members'] == 4 and out['time_limit_s'] == 120.0
    assert out['z_ramp_steps'] == 10 and out['widths'] == [8, 8, 16, 16] and out['w_orbit'] == 7.0


def test_bad_field_gives_a_clear_message_and_status_2(capsys):
    assert main(['train', '--set', 'nonsense=1', '--print-config']) == 2
    assert 'nonsense' in capsys.readouterr().out


@pytest.mark.slow
def test_export_command_writes_the_model(tmp_path, capsys):
    cfg = TrainConfig(out_dir=str(tmp_path / 'r'), train_seeds='0-1', input_size=32, poses=4, members=2,
                      widths=(4, 4, 8, 8), steps=2, warmup_steps=1, workers=0, phantom_cache_dir='')
    ck = train(cfg, factory=TOY, progress=False)
    out = tmp_path / 'm.onnx'
    assert main(['export', str(ck), '--out', str(out), '--name', 'cli-test']) == 0
    assert out.is_file() and 'MB' in capsys.readouterr().out
    assert main(['export', str(tmp_path / 'missing.pt'), '--out', str(out)]) == 2
    assert 'missing.pt' in capsys.readouterr().out


def test_maae_is_zero_for_perfect_and_about_one_for_shuffled_predictions():
    rng = np.random.default_rng(0)
    true = np.linspace(-np.pi, np.pi, 72, endpoint=False)
    m, nm = _maae(true.copy(), true, rng)
    assert m == 0 and nm == 0
    _, nm_random = _maae(rng.permutation(true), true, rng)
    assert 0.8 < nm_random < 1.2


def test_quick_calibration_runs_on_volumes_and_reports_every_axis():
    cfg = TrainConfig(input_size=32, members=2, widths=(4, 4, 8, 8))
    model, orch = build_model(cfg)
    cal = quick_calibration(model, orch, [TOY(0)], cfg, z_steps=12, tilt_steps=5)
    assert set(cal) == {'x', 'y', 'z', 'orbit_x', 'orbit_y', 'sigma2'}
    for axis in ('x', 'y', 'z', 'orbit_x', 'orbit_y'):
        assert np.isfinite(cal[axis]['maae_deg']) and cal[axis]['normalized_maae'] >= 0
    assert cal['sigma2']['mean'] > 0


@functools.cache
def _stage_configs(**env_vars: str) -> list[dict]:
    """The configs scripts/train_shipped_model.sh would train, in order (its print-only mode), with
    these extra environment variables (a run of the script per stage: cached; do not modify the result)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, 'ECHOPOSED_PRINT_CONFIGS': '1', 'PATH': f'{Path(sys.executable).parent}:{os.environ["PATH"]}',
           **env_vars}
    text = subprocess.run(['bash', str(root / 'scripts' / 'train_shipped_model.sh'), 'out/shipped'], cwd=root,
                          env=env, capture_output=True, text=True, check=True).stdout
    decoder, configs, i = json.JSONDecoder(), [], 0
    while text[i:].strip():
        i += len(text[i:]) - len(text[i:].lstrip())
        config, i = decoder.raw_decode(text, i)
        configs.append(config)
    return configs


def test_the_shipped_model_script_chains_its_stages_and_ends_in_the_shipped_config():
    """Each stage warm-starts from the one before, and the last one is the config the shipped
    model carries in its metadata (so the script reproduces that model, not another)."""
    from echoposed_ros.estimator import default_model_path
    from echoposed_ros.estimator.model import EnsembleModel

    configs = _stage_configs()
    assert len(configs) >= 2 and all(TrainConfig.from_dict(c) for c in configs)  # every key is a field
    for before, after in zip(configs, configs[1:]):
        if after['out_dir'] != before['out_dir']:   # a new stage, not a resume of the same one
            # from the stage's checkpoint, or from its export in its folder (stage 7 continued the
            # then-shipped .onnx)
            init = after['init_from']
            assert init == before['out_dir'] + '/last.pt' or (
                init.startswith(before['out_dir'] + '/') and init.endswith('.onnx')), (after['out_dir'], init)
        else:                                       # a resume keeps its starting point
            assert after['init_from'] == before['init_from'], after['out_dir']
    shipped = EnsembleModel(default_model_path()).info.metadata['train_config']
    shipped = shipped if isinstance(shipped, dict) else json.loads(shipped)
    own = {'out_dir', 'init_from', 'time_limit_s', 'ckpt_every_s', 'stop_at_step',  # where, not what
           'device', 'workers'}                                                    # this machine's
    last = configs[-1]
    differ = {k: (last.get(k), shipped.get(k)) for k in (set(last) | set(shipped)) - own
              if last.get(k, TrainConfig().__dict__.get(k)) != shipped.get(k, TrainConfig().__dict__.get(k))}
    assert not differ, differ


@pytest.mark.slow
def test_the_shipped_model_script_passes_extra_train_arguments_to_every_stage():
    """ECHOPOSED_TRAIN_ARGS (a GPU user's --device cuda) reaches every stage and changes nothing else."""
    plain = _stage_configs()
    extra = _stage_configs(ECHOPOSED_TRAIN_ARGS='--device cpu --workers 3 --set log_every=7')
    assert len(extra) == len(plain)
    for a, b in zip(plain, extra):
        assert (b['device'], b['workers'], b['log_every']) == ('cpu', 3, 7)
        assert {k: v for k, v in a.items() if k not in ('device', 'workers', 'log_every')} == \
               {k: v for k, v in b.items() if k not in ('device', 'workers', 'log_every')}


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    monkeypatch.setattr('torch.cuda.device_count', lambda: 0)


def test_device_and_workers_flags(no_cuda, monkeypatch, capsys):
    assert main(['train', '--device', 'cpu', '--workers', 'auto', '--print-config']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['device'] == 'cpu' and out['workers'] == 1          # auto on the CPU: one worker, as before
    assert main(['train', '--workers', '0', '--print-config']) == 0
    assert json.loads(capsys.readouterr().out)['workers'] == 0
    # CUDA asked for where there is none, and fp16 on the CPU ('auto' here): status 2, one clear line
    assert main(['train', '--device', 'cuda', '--print-config']) == 2
    assert "device='cuda': cuda:0 is not available; available: 'cpu' only" in capsys.readouterr().out
    assert main(['train', '--set', 'precision="fp16"', '--print-config']) == 2
    assert "precision='fp16': needs a CUDA device" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(['train', '--workers', 'many', '--print-config'])
    assert "'many': expected 'auto' or a number" in capsys.readouterr().err
    # with a GPU (faked: only the config is resolved), auto workers take the free cores
    from echoposed_ros.training.device import auto_workers
    monkeypatch.setattr('torch.cuda.is_available', lambda: True)
    monkeypatch.setattr('torch.cuda.device_count', lambda: 1)
    assert main(['train', '--threads', '1', '--print-config']) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out['device'] == 'auto' and out['workers'] == auto_workers('cuda', 1)
    assert f'--workers auto: {out["workers"]} data workers beside 1 thread(s) on cuda:0' in captured.err
    # a config file that names the workers keeps them
    assert main(['train', '--set', 'workers=2', 'precision="fp16"', '--print-config']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['workers'] == 2 and out['precision'] == 'fp16'


def test_set_given_twice_adds_up(capsys):
    assert main(['train', '--set', 'w_x=2', '--set', 'log_every=3', '--print-config']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['w_x'] == 2 and out['log_every'] == 3


@pytest.fixture(scope='module')
def warm_source(tmp_path_factory):
    """A tiny checkpoint trained with a non-default recipe (the model a user warm-starts from)."""
    out = tmp_path_factory.mktemp('source')
    cfg = TrainConfig(out_dir=str(out), train_seeds='0-1', input_size=32, poses=4, members=2, widths=(4, 4, 8, 8),
                      steps=1, warmup_steps=1, workers=0, phantom_cache_dir='', loss='cauchy', w_x=2.5,
                      muon_lr=0.001, threads=1)
    return train(cfg, factory=TOY, progress=False)


def test_a_warm_start_takes_the_models_recipe_and_says_where_this_run_differs(warm_source, tmp_path, capsys):
    cfg_file = tmp_path / 'c.json'
    cfg_file.write_text(json.dumps({'w_x': 1.5}))
    rc = main(['train', '--init-from', str(warm_source), '--config', str(cfg_file), '--out', str(tmp_path / 'o'),
               '--steps', '40', '--print-config'])
    assert rc == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    # the model's recipe ...
    assert out['loss'] == 'cauchy' and out['muon_lr'] == 0.001 and out['widths'] == [4, 4, 8, 8]
    # ... less what the config file and the flags say, and less the run's own fields
    assert out['w_x'] == 1.5 and out['steps'] == 40 and out['out_dir'] == str(tmp_path / 'o')
    assert out['init_from'] == str(warm_source) and out['phantom_cache_dir'] == TrainConfig().phantom_cache_dir
    assert 'steps: model 1, this run 40' in captured.err and 'w_x: model 2.5, this run 1.5' in captured.err
    assert 'loss' not in captured.err


def test_no_inherit_starts_a_warm_start_from_the_defaults(warm_source, capsys):
    assert main(['train', '--init-from', str(warm_source), '--no-inherit', '--print-config']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['loss'] == TrainConfig().loss and out['init_from'] == str(warm_source)


def test_the_shipped_model_carries_its_recipe(capsys):
    from echoposed_ros.paths import models_dir
    from echoposed_ros.training.checkpoint import read_config
    shipped = read_config(models_dir() / 'echoposed_k5.onnx')
    assert main(['train', '--init-from', str(models_dir() / 'echoposed_k5.onnx'), '--print-config']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['loss'] == shipped.loss and out['muon_lr'] == shipped.muon_lr and out['members'] == shipped.members


def test_a_missing_warm_start_names_the_file(tmp_path, capsys):
    assert main(['train', '--init-from', str(tmp_path / 'nope.pt'), '--print-config']) == 2
    assert 'nope.pt' in capsys.readouterr().out


def test_distill_is_a_run_field_a_warm_start_does_not_pass_on(warm_source, tmp_path, capsys):
    assert main(['train', '--init-from', str(warm_source), '--distill', '2', '--print-config']) == 0
    assert json.loads(capsys.readouterr().out)['distill_weight'] == 2.0
    # a model trained with a teacher: a warm start from it gets none unless it asks
    with_teacher = train(TrainConfig(out_dir=str(tmp_path / 't'), train_seeds='0-1', input_size=32, poses=4,
                                     members=2, widths=(4, 4, 8, 8), steps=1, warmup_steps=1, workers=0,
                                     phantom_cache_dir='', threads=1, init_from=str(warm_source),
                                     distill_weight=1.0), factory=TOY, progress=False)
    assert main(['train', '--init-from', str(with_teacher), '--print-config']) == 0
    assert json.loads(capsys.readouterr().out)['distill_weight'] == 0.0
    assert main(['train', '--distill', '1', '--print-config']) == 2
    assert 'distill_weight' in capsys.readouterr().out
