"""Read an exported ensemble back into a trainable model: the ONNX file as a warm start.

Checkpoints (``last.pt``) live in a run's output folder, which a fresh clone does not have; the
shipped model does. ``onnx_to_model`` rebuilds the ``EnsembleNet`` from the ``train_config`` in the
file's metadata and fills it from the graph, which ``export.export_onnx`` writes in the forward's
order: the stem conv, then per residual block conv 1 (+ batch norm 1), conv 2 (+ batch norm 2),
the 1x1 shortcut conv when the block has one; the head's Einsum weight and its bias; the adapters
``b_orbit``, ``b_probe`` (the pinned frame folded in). Every tensor's shape is checked against its
slot, and the rebuilt model must reproduce the file's outputs (onnxruntime) to 1e-5 of their
magnitude on random images, or the file is refused with a ``TrainingError`` naming it.

The orchestrator's running sums are not in the file: they start at zero and refill within a few
steps (``adapter_decay``); the adapters start as exported.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from . import TrainingError
from .checkpoint import build_model
from .config import TrainConfig
from .model import EnsembleNet, ExportWrapper
from .orchestrator import Orchestrator

__all__ = ['onnx_to_model']


def _bad(path: Path, what: str) -> TrainingError:
    return TrainingError(f'{path}: cannot be read back as an echoposed ensemble: {what}')


def _put(plist: torch.nn.ParameterList, value: np.ndarray, path: Path, slot: str) -> None:
    """Split a (K * C, ...) tensor over the K members' parameters of ``plist``."""
    k = len(plist)
    shape = (k, *plist[0].shape)
    if value.size != int(np.prod(shape)):
        raise _bad(path, f'{slot} has shape {list(value.shape)}, expected {k} x {list(plist[0].shape)}')
    parts = torch.from_numpy(np.array(value, np.float32).reshape(shape))
    with torch.no_grad():
        for p, v in zip(plist, parts):
            p.copy_(v)


def _put_buffer(buf: torch.Tensor, value: np.ndarray, path: Path, slot: str) -> None:
    if value.size != buf.numel():
        raise _bad(path, f'{slot} has shape {list(value.shape)}, expected {list(buf.shape)}')
    with torch.no_grad():
        buf.copy_(torch.from_numpy(np.array(value, np.float32).reshape(buf.shape)))


def onnx_to_model(path: str | Path, check_images: int = 4) -> tuple[TrainConfig, EnsembleNet, Orchestrator, dict]:
    """-> (config, model (eval mode), orchestrator, a checkpoint-like dict: config, step, data).

    check_images: random images on which the rebuilt model must match the file (0 = no check).
    """
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    try:
        m = onnx.load(str(path))
    except Exception as e:  # OSError, or protobuf's DecodeError (not importable from a stable place)
        raise _bad(path, f'not a readable ONNX file ({type(e).__name__}: {e})') from e
    meta = {p.key: p.value for p in m.metadata_props}
    if 'train_config' not in meta:
        raise _bad(path, 'no train_config in its metadata (not written by echoposed export)')
    raw_cfg = json.loads(meta['train_config'])
    cfg = TrainConfig.from_dict(raw_cfg if isinstance(raw_cfg, dict) else json.loads(raw_cfg))
    model, orch = build_model(cfg)
    model.eval()

    values = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == 'Constant':
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    nodes = {op: [n for n in m.graph.node if n.op_type == op] for op in ('Conv', 'BatchNormalization', 'Einsum', 'Add')}

    def value(name: str, slot: str) -> np.ndarray:
        if name not in values:
            raise _bad(path, f'{slot} ({name}) is computed, not stored')
        return values[name]

    convs, bns = iter(nodes['Conv']), iter(nodes['BatchNormalization'])

    def take(it, slot: str):
        try:
            return next(it)
        except StopIteration:
            raise _bad(path, f'the graph ends before {slot}') from None

    stem = take(convs, 'the stem conv')
    _put(model.stem_w, value(stem.input[1], 'stem weight'), path, 'stem weight')
    _put(model.stem_b, value(stem.input[2], 'stem bias') if len(stem.input) > 2 else np.zeros(0), path,
         'stem bias')
    for i, blk in enumerate(model.blocks):
        for j, (weights, bn, bias) in enumerate(((blk.w1, 'bn1', 'b1'), (blk.w2, 'bn2', 'b2')), 1):
            slot = f'block {i} conv {j}'
            conv = take(convs, slot)
            _put(weights, value(conv.input[1], slot), path, slot)
            if blk.bn:
                norm, layer = take(bns, f'block {i} batch norm {j}'), getattr(blk, bn)
                _put(layer.weight, value(norm.input[1], f'{slot} bn scale'), path, f'{slot} bn scale')
                _put(layer.bias, value(norm.input[2], f'{slot} bn bias'), path, f'{slot} bn bias')
                _put_buffer(layer.running_mean, value(norm.input[3], f'{slot} bn mean'), path, f'{slot} bn mean')
                _put_buffer(layer.running_var, value(norm.input[4], f'{slot} bn var'), path, f'{slot} bn var')
            else:
                _put(getattr(blk, bias), value(conv.input[2], f'{slot} bias') if len(conv.input) > 2
                     else np.zeros(0), path, f'{slot} bias')
        if blk.proj is not None:
            conv = take(convs, f'block {i} shortcut conv')
            _put(blk.proj, value(conv.input[1], f'block {i} shortcut'), path, f'block {i} shortcut')
    if next(convs, None) is not None or next(bns, None) is not None:
        raise _bad(path, 'the graph has more convolutions than its train_config describes')
    if len(nodes['Einsum']) != 1:
        raise _bad(path, f"{len(nodes['Einsum'])} Einsum nodes, expected the head's one")
    einsum = nodes['Einsum'][0]
    _put(model.head_w, value(einsum.input[1], 'head weight'), path, 'head weight')
    head_add = [n for n in nodes['Add'] if einsum.output[0] in n.input]
    if len(head_add) != 1:
        raise _bad(path, 'no head bias after the Einsum')
    bias = [i for i in head_add[0].input if i != einsum.output[0]][0]
    _put(model.head_b, value(bias, 'head bias'), path, 'head bias')
    for name, buf in (('b_orbit', orch.adapter_orbit), ('b_probe', orch.adapter_probe)):
        adapter = value(name, f'adapter {name}')
        if adapter.shape != tuple(buf.shape):
            raise _bad(path, f'adapter {name} has shape {list(adapter.shape)}, expected {list(buf.shape)}')
        with torch.no_grad():
            buf.copy_(torch.from_numpy(np.array(adapter, np.float64)))

    if check_images:
        import onnxruntime as ort
        size = cfg.input_size
        x = torch.rand(check_images, 1, size, size, generator=torch.Generator().manual_seed(0))
        sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
        ref = sess.run(None, {'image': x.numpy()})
        with torch.no_grad():
            got = ExportWrapper(model, orch)(x)
        # relative to each output's largest entry: raw head matrices reach 1e3, float32 then 1e-4
        err = max(float(np.abs(r - g.numpy()).max() / max(1.0, np.abs(r).max())) for r, g in zip(ref, got))
        if not err <= 1e-5:
            raise _bad(path, f"the rebuilt model differs from the file by {err:.2g} of its outputs' "
                             'magnitude (more than 1e-5)')
    ck = {'config': cfg.to_json(), 'step': int(json.loads(meta.get('train_steps', '0'))),
          'data': json.loads(meta.get('train_data', '{}')), 'source': str(path)}
    return cfg, model, orch, ck
