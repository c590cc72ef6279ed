"""Training on a chosen device: name resolution, precision, DDP backend, data workers, and the loop
run with the device parameterised (this machine has no GPU: the CUDA path is checked here as the
same code on the CPU, with CUDA's presence faked where only the choice of device is tested)."""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from echoposed_ros.training import TrainingError
from echoposed_ros.training.checkpoint import load_checkpoint, read_checkpoint
from echoposed_ros.training.config import TrainConfig
from echoposed_ros.training.device import (
    MAX_AUTO_WORKERS,
    auto_workers,
    autocast_context,
    check_precision,
    ddp_backend,
    grad_scaler,
    launch_env,
    resolve_device,
    step_optimizers,
)
from echoposed_ros.training.toy import toy_volume
from echoposed_ros.training.train import train

TOY = functools.partial(toy_volume, n=20, frames=2, spacing=8.0)
TRAINING = Path(__file__).resolve().parents[2] / 'echoposed_ros' / 'training'


def _cfg(out, **kw) -> TrainConfig:
    base = dict(out_dir=str(out), train_seeds='0-1', input_size=32, poses=4, members=3, widths=(4, 4, 8, 8),
                steps=4, warmup_steps=2, z_ramp_steps=2, log_every=2, workers=0, threads=1, phantom_cache_dir='')
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def no_cuda(monkeypatch):
    """This process sees no CUDA device, whatever machine runs the test."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    """This process believes it sees two CUDA devices (only names are resolved, nothing runs there)."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)


def test_auto_and_cpu_resolve_to_the_cpu_without_cuda_and_a_cuda_request_is_refused(no_cuda):
    assert resolve_device('auto') == resolve_device('cpu') == torch.device('cpu')
    for name in ('cuda', 'cuda:1'):
        with pytest.raises(TrainingError, match=rf"device='{name}': cuda:\d is not available; available: 'cpu' only"):
            resolve_device(name)
    with pytest.raises(TrainingError, match="device='gpu': expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device('gpu')


def test_cuda_names_resolve_per_process(two_gpus):
    assert resolve_device('auto') == resolve_device('cuda') == torch.device('cuda', 0)
    assert resolve_device('cuda:1') == torch.device('cuda', 1)
    # torchrun, 2 processes on the node: each on cuda:LOCAL_RANK, 'auto' too
    assert resolve_device('auto', 1, 2) == resolve_device('cuda', 1, 2) == torch.device('cuda', 1)
    # 4 processes, 2 GPUs: 'auto' puts every process on the CPU (NCCL needs a GPU per rank) ...
    assert resolve_device('auto', 3, 4) == torch.device('cpu')
    # ... and 'cuda' names the process that has none
    with pytest.raises(TrainingError, match=r"cuda:3 \(LOCAL_RANK 3\) is not available; available: 'cpu', "
                                            r"'cuda:0', 'cuda:1'"):
        resolve_device('cuda', 3, 4)
    with pytest.raises(TrainingError, match="device='cuda:1': with 2 training processes .* use 'cuda'"):
        resolve_device('cuda:1', 0, 2)
    with pytest.raises(TrainingError, match="cuda:2 is not available; available: 'cpu', 'cuda:0', 'cuda:1'"):
        resolve_device('cuda:2')


def test_launch_env_reads_torchrun_variables(monkeypatch):
    for name in ('WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE'):
        monkeypatch.delenv(name, raising=False)
    assert launch_env() == (0, 1)
    monkeypatch.setenv('WORLD_SIZE', '8')
    monkeypatch.setenv('LOCAL_RANK', '2')
    assert launch_env() == (2, 8)              # one node: its processes are the world
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '4')
    assert launch_env() == (2, 4)


def test_ddp_backend_is_nccl_on_gpus_and_gloo_otherwise():
    assert ddp_backend('cuda') == 'nccl'
    assert ddp_backend('cpu') == 'gloo'


def test_auto_workers_keep_one_on_cpu_and_use_the_free_cores_beside_a_gpu():
    assert auto_workers('cpu', threads=1, cpus=64) == 1
    assert auto_workers('cuda', threads=1, cpus=16) == min(MAX_AUTO_WORKERS, 15)
    assert auto_workers('cuda', threads=2, cpus=6) == 4
    assert auto_workers('cuda', threads=4, cpus=16, local_world=4) == 1   # 4 cores per process, all threads
    assert auto_workers('cuda', threads=1, cpus=1) == 1
    assert 1 <= auto_workers('cuda', threads=1) <= MAX_AUTO_WORKERS       # this machine's cores


def test_fp16_is_refused_on_the_cpu_and_bf16_autocasts_on_the_runs_device():
    with pytest.raises(TrainingError, match="precision='fp16': needs a CUDA device .* device is cpu; use 'bf16'"):
        check_precision('fp16', torch.device('cpu'))
    check_precision('fp16', torch.device('cuda', 0))
    check_precision('bf16', torch.device('cpu'))
    with pytest.raises(TrainingError, match="precision='fp16'"):
        TrainConfig(precision='fp16', device='cpu').validated()
    assert TrainConfig(precision='fp16', device='cuda').validated().precision == 'fp16'
    cpu = torch.device('cpu')
    with autocast_context(cpu, 'bf16')():
        assert torch.is_autocast_enabled('cpu') and torch.get_autocast_dtype('cpu') == torch.bfloat16
        assert (torch.ones(2, 3) @ torch.ones(3, 2)).dtype == torch.bfloat16
    with autocast_context(cpu, 'fp32')():
        assert not torch.is_autocast_enabled('cpu')
    assert not grad_scaler(cpu, 'bf16').is_enabled() and not grad_scaler(cpu, 'fp32').is_enabled()


def _two_optimizers(seed: int = 0):
    torch.manual_seed(seed)
    w = torch.nn.Parameter(torch.randn(4, 6))   # Muon takes 2D matrices
    b = torch.nn.Parameter(torch.randn(4))
    return [w, b], [torch.optim.Muon([w], lr=0.02, weight_decay=0.01), torch.optim.AdamW([b], lr=1e-2)]


def test_a_scaled_step_unscales_before_muon_and_adamw_and_skips_on_inf():
    grads = [torch.randn(4, 6), torch.randn(4)]
    # reference: the true gradients, stepped directly
    ref_params, ref_opts = _two_optimizers()
    for p, g in zip(ref_params, grads):
        p.grad = g.clone()
    assert step_optimizers(ref_opts, grad_scaler(torch.device('cpu'), 'fp32'))
    # fp16's path (a CPU GradScaler, enabled): the loss, so the gradients, scaled by 2^16
    params, opts = _two_optimizers()
    scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 16)
    scaler.scale(sum((p * g).sum() for p, g in zip(params, grads))).backward()
    assert torch.equal(params[1].grad, grads[1] * 2.0 ** 16)
    assert step_optimizers(opts, scaler)
    for p, q in zip(params, ref_params):
        assert torch.allclose(p, q, atol=1e-6)
    # an inf in the AdamW gradient: neither optimiser steps, and the scale is lowered
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = None
    scaler.scale(sum((p * g).sum() for p, g in zip(params, grads))).backward()
    params[1].grad[0] = float('inf')
    assert not step_optimizers(opts, scaler)
    assert all(torch.equal(p, q) for p, q in zip(params, before))
    assert scaler.get_scale() == 2.0 ** 15


def _states(path) -> dict[str, torch.Tensor]:
    _, ck = read_checkpoint(path)
    return {**{f'model.{k}': v for k, v in ck['model'].items()},
            **{f'orchestrator.{k}': v for k, v in ck['orchestrator'].items()}}


def test_cpu_and_auto_train_the_same_checkpoint_as_the_default(tmp_path, no_cuda):
    default = _states(train(_cfg(tmp_path / 'default'), factory=TOY, progress=False))
    for name in ('cpu', 'auto'):
        ck = train(_cfg(tmp_path / name, device=name), factory=TOY, progress=False)
        assert read_checkpoint(ck)[0].device == name
        states = _states(ck)
        assert states.keys() == default.keys()
        for key, value in default.items():
            assert torch.equal(states[key], value), (name, key)
        assert 'device cpu precision fp32' in (tmp_path / name / 'train.log').read_text()


def test_a_cuda_request_or_fp16_without_cuda_fails_before_training(tmp_path, no_cuda):
    with pytest.raises(TrainingError, match=r"device='cuda:0': cuda:0 is not available; available: 'cpu' only"):
        train(_cfg(tmp_path / 'a', device='cuda:0'), factory=TOY, progress=False)
    with pytest.raises(TrainingError, match="precision='fp16': needs a CUDA device"):
        train(_cfg(tmp_path / 'b', precision='fp16'), factory=TOY, progress=False)   # 'auto': cpu here
    assert not (tmp_path / 'a' / 'last.pt').exists() and not (tmp_path / 'b' / 'last.pt').exists()


class _DevicelessTensors(TorchFunctionMode):
    """Records tensor factories called without ``device=`` from the training step's own code: on a
    GPU each would make a CPU tensor in the middle of GPU work. Not counted: data.py (batches are
    made on the CPU, in workers, and moved as a whole) and constructors (``__init__``: modules are
    built on the CPU and moved with ``.to(device)``)."""

    FACTORIES = frozenset({torch.tensor, torch.as_tensor, torch.zeros, torch.ones, torch.empty, torch.full,
                           torch.eye, torch.arange, torch.linspace, torch.rand, torch.randn, torch.randint,
                           torch.triu_indices, torch.tril_indices})

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.FACTORIES and 'device' not in kwargs:
            caller = sys._getframe(1)
            path = Path(caller.f_code.co_filename)
            if path.parent == TRAINING and path.name != 'data.py' and not self._in_constructor(caller):
                self.found.append(f'{path.name}:{caller.f_lineno} {caller.f_code.co_name}: torch.{func.__name__}')
        return func(*args, **kwargs)

    @staticmethod
    def _in_constructor(frame) -> bool:
        while frame is not None and Path(frame.f_code.co_filename).parent == TRAINING:
            if frame.f_code.co_name == '__init__':
                return True
            frame = frame.f_back
        return False


@pytest.mark.filterwarnings('ignore:Mean of empty slice')   # K = 1 logs no validation loss (nan)
def test_the_step_makes_no_tensor_off_the_runs_device(tmp_path, monkeypatch):
    """Every input of the network (batch, validation mask) and every weight is on the run's device,
    and the step code makes no tensor without naming its device (the bugs a GPU run would hit)."""
    from echoposed_ros.training import checkpoint
    seen = []

    def build(cfg):
        model, orch = build_model(cfg)

        def check(module, inputs):
            device = resolve_device(cfg.device)
            tensors = [*inputs, *module.parameters(), *module.buffers(), *orch.buffers()]
            seen.append(all(t.device == device for t in tensors))
        model.register_forward_pre_hook(check)
        return model, orch

    build_model = checkpoint.build_model
    monkeypatch.setattr('echoposed_ros.training.train.build_model', build)
    mode = _DevicelessTensors()
    with mode:   # k = 1 too: its 'all members train' mask
        for k, out in ((3, 'k3'), (1, 'k1')):
            train(_cfg(tmp_path / out, device='cpu', members=k, steps=2), factory=TOY, progress=False)
    assert seen == [True] * 4
    assert not mode.found, mode.found


def test_a_checkpoint_holds_cpu_tensors_and_resumes_under_another_device_name(tmp_path, no_cuda):
    straight = _states(train(_cfg(tmp_path / 'straight'), factory=TOY, progress=False))
    train(_cfg(tmp_path / 'moved', device='auto', stop_at_step=2), factory=TOY, progress=False)
    _, ck = read_checkpoint(tmp_path / 'moved' / 'last.pt')
    tensors = [*ck['model'].values(), *ck['orchestrator'].values()]
    for opt in ck['optimizers']:
        tensors += [v for state in opt['state'].values() for v in state.values() if isinstance(v, torch.Tensor)]
    assert tensors and all(t.device.type == 'cpu' for t in tensors)
    assert 'scaler' not in ck            # no loss scaling outside fp16
    # the device is the machine's, not the recipe's: a resume may name another one
    resumed = train(_cfg(tmp_path / 'moved', device='cpu'), factory=TOY, progress=False)
    cfg, _, _, raw = load_checkpoint(resumed)
    assert raw['step'] == 4 and cfg.device == 'cpu'
    for key, value in _states(resumed).items():
        assert torch.allclose(value, straight[key], atol=1e-6), key


def test_without_fp16_the_scaler_passes_the_loss_through_and_the_optimisers_step_plainly():
    loss = torch.tensor(2.0, requires_grad=True)
    scaler = grad_scaler(torch.device('cpu'), 'fp32')
    assert scaler.scale(loss) is loss and scaler.state_dict() == {}
    params, opts = _two_optimizers()
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.zeros_like(p)
    assert step_optimizers(opts, scaler)
    assert all(not torch.equal(p, q) for p, q in zip(params, before))   # weight decay moved them: they stepped
