"""Export a checkpoint to one ONNX file: all K members and their adapters, one session call.

Contract (read by ``echoposed_ros.estimator``): input ``image`` float32 [N, 1, H, W] in [0, 1],
pixels outside the sector 0 (the graph normalises internally); outputs ``orbit`` and ``probe``
float32 [N, K, 3, 3], the members' raw head matrices with the adapters applied on the left
(``B_k M``; ONNX has no SVD and ``proj(B M) = B proj(M)``, so the runtime projects with numpy).
metadata_props (string -> JSON string): echoposed_format "1", input_height, input_width,
sector_angle_rad, sector_depth_mm, intensity, members, train_config, train_data, model_name.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from . import TrainingError
from .model import EnsembleNet
from .orchestrator import Orchestrator
from .train import load_checkpoint

__all__ = ['ExportWrapper', 'export_onnx']

INTENSITY = ('float32 in [0, 1]: grey level / 255 for 8-bit images, 0 outside the sector; '
             'the graph normalises internally as (x - 0.5) * 4')


class ExportWrapper(torch.nn.Module):
    """image (N, 1, H, W) -> (orbit, probe) (N, K, 3, 3): adapters times raw head matrices."""

    def __init__(self, model: EnsembleNet, orch: Orchestrator):
        super().__init__()
        self.model = model.eval()
        self.register_buffer('b_orbit', orch.adapter_orbit.detach().to(torch.float32).clone())
        self.register_buffer('b_probe', orch.adapter_probe.detach().to(torch.float32).clone())

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rv, rp = self.model(image)
        return self.b_orbit @ rv, self.b_probe @ rp


def export_onnx(checkpoint: str | Path, out: str | Path, model_name: str = '') -> Path:
    """Write the ONNX model for ``checkpoint`` to ``out``; returns ``out``."""
    import onnx
    cfg, model, orch, ck = load_checkpoint(checkpoint)
    wrapper = ExportWrapper(model, orch).eval()
    size = cfg.input_size
    x = torch.rand(2, 1, size, size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(wrapper, (x,), str(out), input_names=['image'], output_names=['orbit', 'probe'],
                          dynamic_axes={'image': {0: 'N'}, 'orbit': {0: 'N'}, 'probe': {0: 'N'}},
                          opset_version=17, dynamo=False)
    m = onnx.load(str(out))
    meta = {
        'echoposed_format': '1',
        'input_height': size,
        'input_width': size,
        'sector_angle_rad': float(np.deg2rad(cfg.sector_angle_deg)),
        'sector_depth_mm': float(cfg.sector_depth_mm),
        'intensity': INTENSITY,
        'members': cfg.members,
        'train_config': json.loads(cfg.to_json()),
        'train_data': ck.get('data', {}),
        'model_name': model_name or out.stem,
        'train_steps': int(ck.get('step', 0)),
    }
    del m.metadata_props[:]
    for key, value in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = key, json.dumps(value)
    try:
        onnx.checker.check_model(m)
    except onnx.checker.ValidationError as e:
        raise TrainingError(f'{out}: exported model fails the ONNX checker ({e})') from e
    onnx.save(m, str(out))
    return out
