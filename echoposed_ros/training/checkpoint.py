"""Checkpoints: build the ensemble a config describes, save a run's state, load it back.

A checkpoint (``last.pt``, written by :func:`save_checkpoint`) is a ``torch.save`` dict that carries
its own config: ``config`` (TrainConfig JSON), ``model`` and ``orchestrator`` state dicts,
``optimizers`` (their state dicts, in :func:`~echoposed_ros.training.optim.build_optimizers`
order), ``step``, ``wall_s`` (training seconds so far), ``data`` (the data source's description),
``torch`` (the version that wrote it), for fp16 runs ``scaler`` (the GradScaler's state) and,
for a run sized by time, ``budget`` (the measured step rate and the steps it set: budget.py). Its
tensors are on the CPU whatever device trained; loading moves them to the run's device.
:func:`load_checkpoint` also reads an exported ``.onnx`` model back (weights and adapters, no
optimiser state), so a warm start can begin from a shipped model.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from . import TrainingError
from .config import TrainConfig
from .model import EnsembleNet
from .orchestrator import Orchestrator

__all__ = ['build_model', 'load_checkpoint', 'read_checkpoint', 'read_config', 'restore_state', 'save_checkpoint']


def build_model(cfg: TrainConfig) -> tuple[EnsembleNet, Orchestrator]:
    """The untrained ensemble and its identity adapters, as ``cfg`` describes them."""
    return (EnsembleNet(cfg.members, cfg.widths, cfg.stem_stride, cfg.first_stride),
            Orchestrator(cfg.members, cfg.adapter_decay))


def _on_cpu(obj: Any) -> Any:
    """``obj`` (nested dicts, lists, tuples of tensors and plain values) with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_on_cpu(v) for v in obj)
    return obj


def save_checkpoint(path: str | Path, cfg: TrainConfig, model: EnsembleNet, orch: Orchestrator,
                    optimizers: list[torch.optim.Optimizer], step: int, wall_s: float, data: dict,
                    scaler: dict | None = None, budget: dict | None = None, extra: dict | None = None) -> None:
    """Write the run's state to ``path`` atomically (a ``.tmp`` file renamed over it), every tensor on
    the CPU whatever the run's device (a checkpoint loads on a CPU-only machine and resumes on any
    device); ``scaler``: the fp16 GradScaler's state dict, kept as ``scaler`` when given; ``extra``:
    more plain entries (e.g. ``sweep_check``, the adaptation's held-out record)."""
    path = Path(path)
    tmp = path.with_suffix('.tmp')
    state = {'config': cfg.to_json(), 'model': model.state_dict(), 'orchestrator': orch.state_dict(),
             'optimizers': [o.state_dict() for o in optimizers], 'step': int(step), 'wall_s': float(wall_s),
             'data': data, 'torch': torch.__version__}
    if scaler:
        state['scaler'] = scaler
    if budget:   # the time budget's record (budget.TimeBudget): a resume keeps its schedule
        state['budget'] = budget
    state.update(extra or {})
    torch.save(_on_cpu(state), tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path) -> tuple[TrainConfig, dict[str, Any]]:
    """-> (its config, the raw checkpoint dict); TrainingError naming the file when it is not one."""
    try:
        ck = torch.load(path, map_location='cpu', weights_only=False)
        return TrainConfig.from_dict(json.loads(ck['config'])), ck
    except (OSError, KeyError, TypeError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as e:
        if isinstance(e, TrainingError):
            raise
        raise TrainingError(f'{path}: not a usable echoposed checkpoint ({type(e).__name__}: {e})') from e


def read_config(path: str | Path) -> TrainConfig:
    """The training config a checkpoint (``.pt``) or an exported model (``.onnx``, its
    ``train_config`` metadata) was made with, without building the model."""
    if Path(path).suffix != '.onnx':
        return read_checkpoint(path)[0]
    import onnx
    try:
        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        raw = json.loads(meta['train_config'])
    except KeyError:
        raise TrainingError(f'{path}: no train_config in its metadata (not written by echoposed export)') from None
    except Exception as e:  # OSError, protobuf's DecodeError, bad JSON
        raise TrainingError(f'{path}: not a readable echoposed model ({type(e).__name__}: {e})') from e
    return TrainConfig.from_dict(raw if isinstance(raw, dict) else json.loads(raw))


def load_checkpoint(path: str | Path) -> tuple[TrainConfig, EnsembleNet, Orchestrator, dict[str, Any]]:
    """-> (config, model (eval mode), orchestrator, the raw checkpoint dict).

    An exported ``.onnx`` file is read back too (:func:`~echoposed_ros.training.onnx_import.onnx_to_model`:
    weights and adapters, no optimiser state; its dict holds config, step, data and source)."""
    if Path(path).suffix == '.onnx':
        from .onnx_import import onnx_to_model  # needs onnx, which only this branch does
        return onnx_to_model(path)
    cfg, ck = read_checkpoint(path)
    model, orch = build_model(cfg)
    restore_state(path, ck, model, orch)
    return cfg, model.eval(), orch, ck


def restore_state(path: str | Path, ck: dict[str, Any], model: EnsembleNet, orch: Orchestrator,
                  optimizers: list[torch.optim.Optimizer] | None = None) -> None:
    """Load checkpoint ``ck`` (read from ``path``) into ``model``, ``orch`` and, when given, the
    optimisers (in place); TrainingError naming the file when a state does not fit."""
    try:
        model.load_state_dict(ck['model'])
        orch.load_state_dict(ck['orchestrator'])
        if optimizers is not None:
            states = ck['optimizers']
            if len(states) != len(optimizers):
                raise ValueError(f'{len(states)} optimiser states for {len(optimizers)} optimisers')
            for opt, state in zip(optimizers, states):
                opt.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError) as e:
        raise TrainingError(f'{path}: not a usable echoposed checkpoint ({type(e).__name__}: {e})') from e
