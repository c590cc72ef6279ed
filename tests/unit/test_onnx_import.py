"""An exported ONNX ensemble read back as a trainable model (warm start from a shipped model)."""
from __future__ import annotations

import functools
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from echoposed_ros.estimator import default_model_path
from echoposed_ros.training import TrainingError
from echoposed_ros.training.checkpoint import load_checkpoint
from echoposed_ros.training.config import TrainConfig
from echoposed_ros.training.export import export_onnx
from echoposed_ros.training.onnx_import import onnx_to_model
from echoposed_ros.training.toy import toy_volume
from echoposed_ros.training.train import train

TOY = functools.partial(toy_volume, n=20, frames=2, spacing=8.0)


def _cfg(out, **kw) -> TrainConfig:
    base = dict(out_dir=str(out), train_seeds='0-1', input_size=32, poses=4, members=3, widths=(4, 4, 8, 8),
                steps=3, warmup_steps=1, z_ramp_steps=2, log_every=1, workers=0, threads=1, phantom_cache_dir='')
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp('run')
    ck = train(_cfg(out), factory=TOY, progress=False)
    onnx_path = export_onnx(ck, out / 'm.onnx', pin_batches=2, factory=TOY)
    return ck, onnx_path


def test_the_weights_and_pinned_adapters_come_back(exported):
    ck, onnx_path = exported
    cfg0, model0, _, raw0 = load_checkpoint(ck)
    cfg, model, orch, raw = load_checkpoint(onnx_path)      # the .onnx path goes through onnx_to_model
    assert cfg == cfg0 and raw['step'] == raw0['step'] == 3 and raw['data'] == raw0['data']
    ref = model0.state_dict()
    for name, value in model.state_dict().items():
        assert torch.allclose(value, ref[name], atol=1e-6), name
    m = onnx.load(str(onnx_path))
    stored = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for name, adapter in (('b_orbit', orch.adapter_orbit), ('b_probe', orch.adapter_probe)):
        assert np.allclose(adapter.numpy(), stored[name], atol=1e-6), name
    assert not torch.allclose(orch.adapter_probe, torch.eye(3, dtype=torch.float64))  # the pin is in them


def test_a_warm_start_from_the_onnx_file_trains(exported, tmp_path):
    _, onnx_path = exported
    logs = []
    train(_cfg(tmp_path / 'warm', steps=2, init_from=str(onnx_path)), factory=TOY, progress=False,
          on_log=logs.append)
    assert [r['step'] for r in logs] == [1, 2] and all(np.isfinite(r['loss']) for r in logs)
    assert f'warm start from {onnx_path} (its step 3)' in (tmp_path / 'warm' / 'train.log').read_text()


def test_the_shipped_model_reads_back():
    cfg, model, orch, raw = onnx_to_model(default_model_path())   # raises unless it reproduces the file
    assert raw['step'] > 0 and cfg.members == orch.adapter_probe.shape[0] == model.k


def test_a_wrong_file_is_refused_naming_it_and_the_fault(exported, tmp_path):
    _, onnx_path = exported
    junk = tmp_path / 'junk.onnx'
    junk.write_bytes(b'not a model')
    with pytest.raises(TrainingError, match=r'junk\.onnx.*not a readable ONNX file'):
        onnx_to_model(junk)
    m = onnx.load(str(onnx_path))

    def variant(name, edit):
        v = onnx.ModelProto()
        v.CopyFrom(m)
        edit(v)
        onnx.save(v, str(tmp_path / name))
        return tmp_path / name

    def no_config(v):
        kept = [p for p in v.metadata_props if p.key != 'train_config']
        del v.metadata_props[:]
        v.metadata_props.extend(kept)
    with pytest.raises(TrainingError, match=r'no_config\.onnx.*no train_config'):
        onnx_to_model(variant('no_config.onnx', no_config))

    def wider(v):
        for p in v.metadata_props:
            if p.key == 'train_config':
                c = json.loads(p.value)
                c = c if isinstance(c, dict) else json.loads(c)
                p.value = json.dumps({**c, 'widths': [8, 8, 8, 8]})
    with pytest.raises(TrainingError, match=r'wider\.onnx.*stem weight has shape'):
        onnx_to_model(variant('wider.onnx', wider))

    def rescaled(v):   # the input normalisation, which is not a weight, changed: weights fit, outputs do not
        mul = next(n for n in v.graph.node if n.op_type == 'Mul')
        const = next(n for n in v.graph.node if n.op_type == 'Constant' and n.output[0] in mul.input)
        const.attribute[0].t.CopyFrom(numpy_helper.from_array(
            numpy_helper.to_array(const.attribute[0].t) * np.float32(0.75)))
    with pytest.raises(TrainingError, match=r'rescaled\.onnx.*differs from the file'):
        onnx_to_model(variant('rescaled.onnx', rescaled))
