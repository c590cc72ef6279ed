"""ONNX export: one file with all members and adapters; onnxruntime agrees with PyTorch."""
from __future__ import annotations

import functools
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from scipy.spatial.transform import Rotation

from echoposed_ros.training import TrainingError
from echoposed_ros.training.checkpoint import load_checkpoint
from echoposed_ros.training.config import TrainConfig
from echoposed_ros.training.export import ExportWrapper, export_onnx
from echoposed_ros.training.toy import toy_volume
from echoposed_ros.training.train import train

TOY = functools.partial(toy_volume, n=20, frames=2, spacing=8.0)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp('ck')
    cfg = TrainConfig(out_dir=str(out), train_seeds='0-1', input_size=32, poses=4, members=3,
                      widths=(4, 4, 8, 8), steps=4, warmup_steps=2, z_ramp_steps=2, workers=0,
                      phantom_cache_dir='')
    return train(cfg, factory=TOY, progress=False)


def test_onnx_matches_pytorch_and_carries_the_metadata(checkpoint, tmp_path):
    cfg, model, orch, raw = load_checkpoint(checkpoint)
    # adapters must not be the identity, or the test could not see them applied
    with torch.no_grad():
        orch.adapter_probe[1] = torch.from_numpy(Rotation.from_rotvec([0.3, -0.2, 1.0]).as_matrix())
    torch.save({**raw, 'orchestrator': orch.state_dict()}, tmp_path / 'ck.pt')
    path = export_onnx(tmp_path / 'ck.pt', tmp_path / 'm.onnx', model_name='test-model', pin_batches=0)
    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    inp = sess.get_inputs()[0]
    assert inp.name == 'image' and inp.shape[1:] == [1, 32, 32] and isinstance(inp.shape[0], str)
    assert [o.name for o in sess.get_outputs()] == ['orbit', 'probe']
    rng = np.random.default_rng(0)
    for n in (1, 5):
        x = rng.uniform(0, 1, (n, 1, 32, 32)).astype(np.float32)
        ov, op = sess.run(None, {'image': x})
        assert ov.shape == op.shape == (n, 3, 3, 3)
        with torch.no_grad():
            tv, tp = ExportWrapper(model, orch)(torch.from_numpy(x))
            rv, rp = model(torch.from_numpy(x))
        np.testing.assert_allclose(ov, tv.numpy(), atol=1e-4)
        np.testing.assert_allclose(op, tp.numpy(), atol=1e-4)
        np.testing.assert_allclose(op[:, 1], (orch.adapter_probe[1].float() @ rp[:, 1]).numpy(), atol=1e-4)
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert str(meta['echoposed_format']) == '1'
    assert meta['input_height'] == meta['input_width'] == 32 and meta['members'] == 3
    assert meta['sector_angle_rad'] == pytest.approx(np.deg2rad(cfg.sector_angle_deg))
    assert meta['sector_depth_mm'] == cfg.sector_depth_mm
    assert TrainConfig.from_dict(meta['train_config']) == cfg
    assert meta['train_data']['seeds'] == '0-1' and meta['model_name'] == 'test-model'
    assert 'intensity' in meta and '[0, 1]' in meta['intensity']
    assert meta['frame'] == {'pinned': False}


def test_pinned_frame_ignores_the_training_frame_and_is_recorded(checkpoint, tmp_path):
    from echoposed_ros.training.export import pin_frame
    cfg, model, orch, raw = load_checkpoint(checkpoint)
    # the same ensemble in another common frame Q (what a different anchor or run would give)
    Q_v = torch.from_numpy(Rotation.from_rotvec([0.4, 0.1, -2.0]).as_matrix())
    Q_p = torch.from_numpy(Rotation.from_rotvec([-1.0, 0.7, 2.5]).as_matrix())
    _, model2, orch2, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        orch2.adapter_orbit.copy_(Q_v @ orch2.adapter_orbit)
        orch2.adapter_probe.copy_(Q_p @ orch2.adapter_probe)
    info = pin_frame(model, orch, cfg, batches=3, factory=TOY)
    pin_frame(model2, orch2, cfg, batches=3, factory=TOY)
    torch.testing.assert_close(orch.adapter_orbit, orch2.adapter_orbit, atol=1e-9, rtol=0)
    torch.testing.assert_close(orch.adapter_probe, orch2.adapter_probe, atol=1e-9, rtol=0)
    assert info['images'] == 3 * cfg.poses * 2 and set(info['offset_deg']) == {'orbit', 'probe'}
    # pinning twice removes nothing more
    again = pin_frame(model, orch, cfg, batches=3, factory=TOY)
    assert again['offset_deg']['orbit'] < 1e-3 and again['offset_deg']['probe'] < 1e-3  # deg
    path = export_onnx(checkpoint, tmp_path / 'p.onnx', pin_batches=3, factory=TOY)
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert meta['frame']['pinned'] is True and meta['frame']['batches'] == 3


def test_runtime_loader_accepts_the_export(checkpoint, tmp_path):
    from echoposed_ros.estimator.model import load_model
    path = export_onnx(checkpoint, tmp_path / 'm.onnx', factory=TOY)
    info = load_model(path).info
    assert info.members == 3 and info.input_height == 32 and info.input_width == 32


def test_bad_checkpoint_is_named(tmp_path):
    bad = tmp_path / 'junk.pt'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(TrainingError, match='junk.pt'):
        export_onnx(bad, tmp_path / 'x.onnx')
