"""Where a training run computes: the torch device a config names, the autocast and gradient
scaling of its precision on that device, the DDP backend, and the data workers for the machine.

Device names (``TrainConfig.device``): ``'auto'`` (``cuda`` when ``torch.cuda.is_available()``,
else ``cpu``), ``'cpu'``, ``'cuda'`` or ``'cuda:N'``. Under ``torchrun`` (several processes on a
node) ``'auto'`` and ``'cuda'`` put each process on ``cuda:LOCAL_RANK``.

Precisions: ``'fp32'``; ``'bf16'``: the network's forward under autocast bfloat16 on the run's
device (CPU or CUDA); ``'fp16'``: CUDA only, autocast float16 with a ``torch.amp.GradScaler``
(gradients unscaled before any optimiser steps; a step whose gradients hold inf or NaN is skipped
and the scale lowered). SVD projection, loss, optimisers and weights stay float32 in every case.
"""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable

import torch

from . import TrainingError

__all__ = ['DEVICE_PATTERN', 'MAX_AUTO_WORKERS', 'auto_workers', 'autocast_context', 'check_device_name',
           'check_precision', 'ddp_backend', 'grad_scaler', 'launch_env', 'resolve_device', 'step_optimizers']

#: The device names a config may hold: auto, cpu, cuda, cuda:N.
DEVICE_PATTERN = re.compile(r'auto|cpu|cuda(:\d+)?')

#: Most data workers ``auto_workers`` gives one training process: each worker keeps its own cache of
#: up to ``cache_volumes`` volumes (a default phantom patient is about 18 MB).
MAX_AUTO_WORKERS = 8


def check_device_name(name: str) -> str:
    """``name`` if it is a device name (see the module doc), else TrainingError naming the field."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise TrainingError(f"config field device={name!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return name


def _available() -> str:
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not n:
        return (f"'cpu' only (torch {torch.__version__}: torch.cuda.is_available() is False; "
                f"{'no CUDA device visible' if torch.version.cuda else 'a build without CUDA'})")
    return "'cpu', " + ', '.join(f"'cuda:{i}'" for i in range(n))


def resolve_device(name: str, local_rank: int = 0, local_world: int = 1) -> torch.device:
    """The torch device for a config's ``device`` field in this process.

    local_rank, local_world: this process's index and the number of training processes on this
    node (torchrun's LOCAL_RANK, LOCAL_WORLD_SIZE; 0 and 1 without DDP). With several processes
    ``'cuda'`` means ``cuda:local_rank``, ``'auto'`` means that when the node has a GPU for every
    process (else cpu, for every process alike), and ``'cuda:N'`` is refused (all would share one
    GPU). TrainingError naming the field and what is available when CUDA is asked for and absent.
    """
    check_device_name(name)
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == 'cpu':
        return torch.device('cpu')
    if name == 'auto':
        if cuda >= max(1, local_world):
            return torch.device('cuda', local_rank if local_world > 1 else 0)
        return torch.device('cpu')
    if local_world > 1 and name != 'cuda':
        raise TrainingError(f"config field device={name!r}: with {local_world} training processes on this node "
                            "use 'cuda' (each process takes cuda:LOCAL_RANK; choose the GPUs with "
                            'CUDA_VISIBLE_DEVICES)')
    index = local_rank if name == 'cuda' else int(name.split(':')[1])
    if index >= cuda:
        want = f'cuda:{index}' + (f' (LOCAL_RANK {local_rank})' if local_world > 1 else '')
        raise TrainingError(f'config field device={name!r}: {want} is not available; available: {_available()}')
    return torch.device('cuda', index)


def launch_env() -> tuple[int, int]:
    """(LOCAL_RANK, LOCAL_WORLD_SIZE) of this process as torchrun sets them; (0, 1) without DDP
    (WORLD_SIZE unset or 1). LOCAL_WORLD_SIZE unset under DDP: WORLD_SIZE (one node)."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world <= 1:
        return 0, 1
    return int(os.environ.get('LOCAL_RANK', '0')), int(os.environ.get('LOCAL_WORLD_SIZE', str(world)))


def check_precision(precision: str, device: torch.device) -> None:
    """TrainingError when ``precision`` cannot run on ``device`` (fp16 needs CUDA)."""
    if precision == 'fp16' and device.type != 'cuda':
        raise TrainingError(f"config field precision='fp16': needs a CUDA device (autocast float16 with a "
                            f"GradScaler), but this run's device is {device.type}; use 'bf16' or 'fp32' on CPU")


def autocast_context(device: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    """-> a factory of the context the network's forward runs in: nothing for fp32, autocast of
    bfloat16 (bf16) or float16 (fp16) on ``device``'s type."""
    if precision == 'fp32':
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == 'bf16' else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """The loss scaler of ``precision`` on ``device``: enabled for fp16, a pass-through otherwise
    (its ``scale`` returns the loss and its ``step`` steps the optimiser unchanged)."""
    return torch.amp.GradScaler(device.type, enabled=precision == 'fp16')


def step_optimizers(opts: list[torch.optim.Optimizer], scaler: torch.amp.GradScaler) -> bool:
    """Step every optimiser through ``scaler``; -> False when the step was skipped.

    Enabled scaler (fp16): every optimiser's gradients are unscaled first (Muon orthogonalises its
    update, but it and AdamW decay weights with the learning rate and AdamW's epsilon is absolute:
    both need the true gradients); when any gradient holds inf or NaN, no optimiser steps (the
    members stay in step with each other) and the scale is lowered for the next step. Disabled
    scaler: plain ``opt.step()`` for each, True.
    """
    if not scaler.is_enabled():
        for opt in opts:
            opt.step()
        return True
    for opt in opts:
        scaler.unscale_(opt)
    grads = [p.grad for opt in opts for group in opt.param_groups for p in group['params'] if p.grad is not None]
    finite = not grads or bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))
    if finite:
        for opt in opts:
            scaler.step(opt)
    scaler.update()   # lowers the scale after inf or NaN (found by unscale_), else may raise it
    return finite


def ddp_backend(device_type: str) -> str:
    """The torch.distributed backend for ranks computing on ``device_type``: 'nccl' for 'cuda'
    (every rank on its own GPU; ``resolve_device`` makes all ranks of a node agree), 'gloo' otherwise."""
    return 'nccl' if device_type == 'cuda' else 'gloo'


def auto_workers(device_type: str, threads: int, local_world: int = 1, cpus: int | None = None) -> int:
    """Data worker processes for one training process on this machine (``--workers auto``).

    CPU: 1, as the config default: the trainer's ``threads`` need the cores, and one worker keeps
    slicing off the training thread. CUDA: the cores of this process's share of the node
    (``cpus / local_world``, cpus = the cores this process may run on) less its ``threads``, at
    least 1 and at most ``MAX_AUTO_WORKERS``.
    """
    if device_type != 'cuda':
        return 1
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    share = cpus // max(1, local_world)
    return max(1, min(MAX_AUTO_WORKERS, share - max(1, threads)))
