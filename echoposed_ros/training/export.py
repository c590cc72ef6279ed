"""Export a checkpoint to one ONNX file: all K members and their adapters, one session call.

Contract (read by ``echoposed_ros.estimator``): input ``image`` float32 [N, 1, H, W] in [0, 1],
pixels outside the sector 0 (the graph normalises internally); outputs ``orbit`` and ``probe``
float32 [N, K, 3, 3], the members' raw head matrices with the adapters applied on the left
(``B_k M``; ONNX has no SVD and ``proj(B M) = B proj(M)``, so the runtime projects with numpy).
metadata_props (string -> JSON string): echoposed_format "1", input_height, input_width,
sector_angle_rad, sector_depth_mm, intensity, members, train_config, train_data, model_name,
frame.

**Pinned frame.** Training fixes the ensemble's common frame only up to a constant left factor
``A = (A_v, A_p)`` (docs/method.md section 4: the loss sees differences). Before export, ``pin_frame``
measures it on training batches, whose poses are known relative to each volume's base pose
(``A = proj(sum_i M(x_i) g_i^{-1})`` per factor, M the aligned ensemble mean), and folds ``A^T``
into every adapter. The exported model then reports poses in the volume frame of its training
data (the apical base pose near ``(I, I)``), so absolute quantities such as the Cartesian twist
(docs/method.md section 6) come out in the right directions. Body-frame guidance does not need it.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from . import TrainingError
from .checkpoint import load_checkpoint
from .model import EnsembleNet, ExportWrapper
from .orchestrator import Orchestrator

__all__ = ['ExportWrapper', 'export_onnx', 'pin_frame']  # ExportWrapper: re-exported from .model

INTENSITY = ('float32 in [0, 1]: grey level / 255 for 8-bit images, 0 outside the sector; '
             'the graph normalises internally as (x - 0.5) * 4')


@torch.no_grad()
def pin_frame(model: EnsembleNet, orch: Orchestrator, cfg, batches: int = 16, factory=None) -> dict:
    """Fold the ensemble's constant left factor into ``orch``'s adapters (in place; see the module
    doc). Uses ``batches`` un-augmented training batches (steps far beyond any run's). Returns
    {'batches', 'images', 'offset_deg': {'orbit', 'probe'} (angle of the removed factor),
    'residual_deg': {'orbit', 'probe'} (median angle of M(x_i) g_i^{-1} from the pinned identity)}.
    """
    from .data import VolumeSource, make_batch
    from .loss import geodesic_angle
    from .svd import project_to_so3
    cfg = cfg.replace(sweep_weight=0.0)   # an adaptation sweep's labels are relative to its start: volumes only
    source = VolumeSource.from_config(cfg, factory)
    model.eval()
    G = {'orbit': [], 'probe': []}
    for b in range(batches):
        batch = make_batch(cfg, source, 10**9 + b, augmentation=False)
        F_v, F_p = model(torch.from_numpy(batch['image']))
        A_v, A_p = orch.align(project_to_so3(F_v.double()), project_to_so3(F_p.double()))
        for name, A, R in (('orbit', A_v, batch['orbit']), ('probe', A_p, batch['probe'])):
            M = project_to_so3(A.mean(1))
            G[name].append(M @ torch.from_numpy(np.asarray(R, np.float64)).transpose(-1, -2))
    info = {'batches': batches, 'images': int(sum(g.shape[0] for g in G['probe'])), 'offset_deg': {},
            'residual_deg': {}}
    for name, adapter in (('orbit', orch.adapter_orbit), ('probe', orch.adapter_probe)):
        g = torch.cat(G[name])
        offset = project_to_so3(g.sum(0))
        adapter.copy_(offset.transpose(-1, -2).to(adapter.dtype) @ adapter)
        info['offset_deg'][name] = float(np.rad2deg(float(geodesic_angle(offset))))
        info['residual_deg'][name] = float(np.rad2deg(float(geodesic_angle(offset.transpose(-1, -2) @ g).median())))
    return info


def export_onnx(checkpoint: str | Path, out: str | Path, model_name: str = '', pin_batches: int = 16,
                factory=None) -> Path:
    """Write the ONNX model for ``checkpoint`` to ``out``; returns ``out``.

    pin_batches: training batches used to pin the frame (``pin_frame``); 0 keeps the training frame
    (member 0's). factory: optional ``key -> Volume`` for those batches (tests).
    """
    import onnx
    cfg, model, orch, ck = load_checkpoint(checkpoint)
    frame = {'pinned': False}
    if pin_batches > 0:
        frame = {'pinned': True, **pin_frame(model, orch, cfg, pin_batches, factory)}
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
        'frame': frame,
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
