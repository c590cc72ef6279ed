"""The training loop (docs/method.md sections 3-4).

Per step: one volume's batch (data.py, made in DataLoader workers, off this thread); all K
members run on it; member ``step mod K`` validates (no update, batch norm on running stats) while
the others train on the pairwise equivariance loss; the orchestrator refits the adapters on the
detached outputs. Logs (tqdm bar + plain ``train.log``): loss of the training members, validation
loss of the resting member, orbit and probe terms (rad^2), adapter residuals (deg).
Checkpoints ``last.pt`` (every ``ckpt_every_s`` and at the end) hold config, model, adapters,
optimiser states, step and the data description: ``train(cfg, resume=True)`` continues a run.
SIGINT or SIGTERM (Ctrl-C, a scheduler's stop) ends the step under way, checkpoints it and raises
``TrainingStopped``; a second signal acts as the process's own handler would (abort). A signal the
process ignores (a background job's SIGINT) stays ignored.

Device (``cfg.device``, device.py): model, adapters, batches (moved with ``non_blocking``, pinned by
the DataLoader on CUDA) and loss on it; checkpoints hold CPU tensors and resume on any device.

Teacher (``cfg.distill_weight`` > 0): the warm start, frozen, reads the clean image of every slice (the patient
in the default style, before augmentation: data.py) and each training member is pulled towards the teacher's
member on it (loss.py :func:`distill_loss`), so a style the student sees is read as the teacher reads the
default one, and a fine-tune on other data (an adaptation sweep, whose batches have no teacher) keeps what
the volumes taught; with ``distill_phases`` P > 1 the target is the teacher's mean reading of the pose over P phases
of the cycle, which the heartbeat does not move.

Time budget (``cfg.time_budget_s``, budget.py): the step rate is measured over early steps, then
``steps`` is set so the schedule ends inside the budget, which also stops the run; the checkpoint
keeps the measured rate and the steps (``budget``), and a resume keeps that schedule.

DDP: under ``torchrun`` (WORLD_SIZE > 1) each process takes its own data (rank-seeded), the model
is wrapped in DistributedDataParallel (NCCL with each process on ``cuda:LOCAL_RANK``, gloo on CPU)
and the adapter sums are all-reduced.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from . import TrainingError, TrainingStopped
from .budget import TimeBudget
from .checkpoint import build_model, load_checkpoint, read_checkpoint, restore_state, save_checkpoint
from .config import TrainConfig
from .data import VolumeSource, batches
from .device import (
    autocast_context,
    check_precision,
    ddp_backend,
    grad_scaler,
    launch_env,
    resolve_device,
    step_optimizers,
)
from .loss import distill_loss, pair_loss
from .optim import build_optimizers, lr_factor, set_lr
from .svd import project_to_so3

__all__ = ['RESUME_FREE_FIELDS', 'train']


def _logger(path: Path, rank: int) -> logging.Logger:
    log = logging.getLogger(f'echoposed.train.{path}')
    log.setLevel(logging.INFO)
    log.propagate = False
    if rank == 0 and not log.handlers:
        h = logging.FileHandler(path)
        h.setFormatter(logging.Formatter('%(asctime)s %(message)s', '%Y-%m-%dT%H:%M:%S'))
        log.addHandler(h)
    return log


@contextlib.contextmanager
def _stop_requests():
    """Yield a one-item list that SIGINT / SIGTERM set to the signal's number while the block runs.

    Only in the main thread (signal handlers cannot be set elsewhere); an ignored signal stays
    ignored; the first signal restores the previous handlers, so a second one acts as before."""
    got = [0]
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def request(signum, _frame):
        got[0] = signum
        for s, h in old.items():
            signal.signal(s, h)

    for s, h in old.items():
        if h is not signal.SIG_IGN:
            signal.signal(s, request)
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _over_ranks(n: int, ddp: bool, device: torch.device, op: str) -> int:
    """``n`` reduced over all ranks with ``op`` ('MAX' or 'MIN'), so every rank takes the same
    decision: the largest stop request (all stop after the same step), the smallest budgeted
    number of steps."""
    if not ddp:
        return n
    t = torch.tensor([n], device=device)
    dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
    return int(t.item())


def _teacher(cfg: TrainConfig, device: torch.device) -> torch.nn.Module | None:
    """The frozen teacher of ``distill_weight`` > 0: the warm start's network (``init_from``, read again so a
    resumed run has it too) in eval mode (batch norm on its running statistics, as deployed), no gradients."""
    if cfg.distill_weight <= 0:
        return None
    _, teacher, _, _ = load_checkpoint(cfg.init_from)
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _write_config(out: Path, cfg: TrainConfig) -> None:
    """``out/config.json``: the config this run trains with (indented JSON)."""
    (out / 'config.json').write_text(json.dumps(json.loads(cfg.to_json()), indent=2))


# Fields a resumed run may change: when to stop, how often to log and checkpoint, and the machine's
# resources (device, threads, workers: the batches are a function of seed and step). Every other
# field shapes what is learnt, so a resume with another value is refused.
RESUME_FREE_FIELDS = ('ckpt_every_s', 'device', 'log_every', 'steps', 'stop_at_step', 'threads', 'time_budget_s',
                      'time_limit_s', 'workers')


def _config_changes(old: TrainConfig, new: TrainConfig) -> list[str]:
    """Fields (other than RESUME_FREE_FIELDS) whose values differ, as 'name: checkpoint X, now Y'."""
    a, b = dataclasses.asdict(old), dataclasses.asdict(new)
    return [f'{k}: checkpoint {a[k]!r}, now {b[k]!r}' for k in sorted(a)
            if k not in RESUME_FREE_FIELDS and a[k] != b[k]]


def train(cfg: TrainConfig, resume: bool = True, factory=None, progress: bool = True,
          on_log=None) -> Path:
    """Run (or resume) training; returns the path of the last checkpoint.

    factory: optional ``key -> Volume`` replacing the phantom / file loader (tests).
    on_log: optional callback ``dict -> None`` for each log record (experiments).
    """
    ddp = int(os.environ.get('WORLD_SIZE', '1')) > 1
    device = resolve_device(cfg.device, *launch_env())
    check_precision(cfg.precision, device)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    if ddp and not dist.is_initialized():
        dist.init_process_group(ddp_backend(device.type))
    rank = dist.get_rank() if ddp else 0
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = _logger(out / 'train.log', rank)
    ck_path = out / 'last.pt'

    model, orch = build_model(cfg)
    model.to(device)
    orch.to(device)
    opts = build_optimizers(model, cfg)
    scaler = grad_scaler(device, cfg.precision)
    start, wall0, ck = 0, 0.0, {}
    if resume and ck_path.exists():
        old, ck = read_checkpoint(ck_path)
        changed = _config_changes(old, cfg)
        if changed:
            raise TrainingError(f"{ck_path}: checkpoint config differs from this run's config in "
                                f'{"; ".join(changed)}; use a new out_dir or the same config')
        restore_state(ck_path, ck, model, orch, opts)
        if scaler.is_enabled() and 'scaler' in ck:
            scaler.load_state_dict(ck['scaler'])
        start, wall0 = int(ck['step']), float(ck['wall_s'])
        log.info('resume step %d', start)
    elif cfg.init_from:
        _, init_model, init_orch, init_ck = load_checkpoint(cfg.init_from)
        try:
            model.load_state_dict(init_model.state_dict())
        except RuntimeError as e:
            raise TrainingError(f"init_from {cfg.init_from}: model layout differs from this config's "
                                f'(members, widths, strides must match): {e}') from None
        orch.load_state_dict(init_orch.state_dict())
        log.info('warm start from %s (its step %d)', cfg.init_from, int(init_ck['step']))
    teacher = _teacher(cfg, device)
    # a time budget sets `steps` once the step rate is measured (budget.py); a resume keeps them
    budget = TimeBudget(cfg, start, wall0, ck.get('budget'))
    cfg = budget.cfg
    data_desc = VolumeSource.from_config(cfg, factory).describe()
    if rank == 0:
        _write_config(out, cfg)
        log.info('config %s', cfg.to_json())
        log.info('device %s precision %s workers %d threads %d', device, cfg.precision, cfg.workers, cfg.threads)
        log.info('data %s', json.dumps(data_desc))
        if cfg.time_budget_s > 0:
            log.info(budget.summary())
    ids = [device.index] if device.type == 'cuda' else None
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids) if ddp else model
    reduce = (lambda t: dist.all_reduce(t)) if ddp else None
    k = cfg.members
    member_params = [model.member_parameters(m) for m in range(k)]
    # precision 'bf16' / 'fp16': only the network's forward is autocast (benchmarks/bench_train_step.py)
    autocast = autocast_context(device, cfg.precision)
    pin = device.type == 'cuda'

    # held-out sweep poses (adaptation): their relative-pose error picks the checkpoint kept in best.pt
    check = None
    if cfg.sweep_file and cfg.sweep_holdout > 0 and rank == 0:
        from .data import load_sweep
        from .sweep_check import check_frames, sweep_check_deg
        sweep = load_sweep(cfg.sweep_file, cfg.input_size, cfg.sweep_holdout)
        frames = check_frames(sweep)
        check = {'frames': len(frames), 'holds': int(len(np.unique(sweep.hold[frames])))}
        check['start_deg'] = check['best_deg'] = sweep_check_deg(model, orch, sweep, frames)
        check['best_step'] = start
        best_state = copy.deepcopy((model.state_dict(), orch.state_dict()))
        log.info('sweep check: %d frames of %d held-out holds, %.2f deg at step %d', check['frames'],
                 check['holds'], check['start_deg'], start)

    t0 = time.time()
    last_ck = t0
    step = start
    acc: dict[str, list[float]] = {}
    bar = tqdm(total=None if budget.measuring else cfg.steps, initial=start, disable=not progress or rank != 0,
               dynamic_ncols=True)
    model.train()
    if cfg.freeze_bn:   # batch norm on the model's running statistics: they are not pulled towards new data
        from .model import MaskedBatchNorm
        for m in model.modules():
            if isinstance(m, MaskedBatchNorm):
                m.eval()
    with _stop_requests() as got, batches(cfg, start, cfg.steps, rank, factory, pin) as stream:
        for batch in stream:  # the workers ignore the signal; the block's end ends them (data.py)
            step = int(batch['step'])
            set_lr(opts, lr_factor(cfg, step))
            image, orbit, probe = (batch[key].to(device, non_blocking=True) for key in ('image', 'orbit', 'probe'))
            frozen = torch.zeros(k, dtype=torch.bool, device=device)
            if k > 1:
                frozen[step % k] = True
            with autocast():
                raw_v, raw_p = net(image, frozen)
            F_v, F_p = project_to_so3(raw_v.float()), project_to_so3(raw_p.float())
            loss_k, lv, lp = pair_loss(F_v, F_p, orbit, probe, cfg.w_orbit, cfg.w_probe, cfg.loss,
                                       float(np.deg2rad(cfg.loss_scale_deg)), cfg.w_x)
            total_k = loss_k
            taught = teacher is not None and 'clean' in batch   # volume batches (data.py)
            if taught:
                with torch.no_grad():
                    clean = batch['clean'].to(device, non_blocking=True)
                    with autocast():
                        t_v, t_p = teacher(clean)
                    # phase-major blocks (data.py): the teacher's mean reading over the phases of each pose
                    phases = clean.shape[0] // image.shape[0]
                    t_v, t_p = (project_to_so3(t.float().view(phases, *F_v.shape).mean(0)) for t in (t_v, t_p))
                dist_k = distill_loss(F_v, F_p, t_v, t_p, cfg.w_orbit, cfg.w_probe,
                                      float(np.deg2rad(cfg.loss_scale_deg)))
                total_k = loss_k + cfg.distill_weight * dist_k
            train_loss = total_k[~frozen].sum() if k > 1 else total_k.sum()
            for o in opts:
                o.zero_grad(set_to_none=True)
            scaler.scale(train_loss).backward()
            if k > 1:
                for p in member_params[step % k]:
                    p.grad = None
            step_optimizers(opts, scaler)   # fp16: unscaled first, skipped on inf / NaN
            res_v, res_p = orch.update(F_v, F_p, reduce)
            loss_k, lv, lp = loss_k.detach(), lv.detach(), lp.detach()
            tr = ~frozen if k > 1 else torch.ones(k, dtype=torch.bool, device=device)
            rec = {'loss': float(loss_k[tr].mean()), 'val': float(loss_k[frozen].mean()) if k > 1 else float('nan'),
                   'orbit': float(lv[tr].mean()), 'probe': float(lp[tr].mean()),
                   'res_v_deg': float(np.rad2deg(res_v)), 'res_p_deg': float(np.rad2deg(res_p))}
            if taught:
                rec['distill'] = float(dist_k.detach()[tr].mean())
            for key, val in rec.items():
                acc.setdefault(key, []).append(val)
            bar.update(1)
            step += 1
            elapsed = time.time() - t0
            if budget.measuring and budget.observe(step, wall0 + elapsed, lambda n: _over_ranks(n, ddp, device, 'MIN')):
                cfg = budget.cfg
                bar.total = cfg.steps
                if rank == 0:
                    _write_config(out, cfg)
                    log.info(budget.summary())
            if step % cfg.log_every == 0 or step == cfg.steps:
                mean = {key: float(np.nanmean(v)) for key, v in acc.items()}
                acc = {}
                mean.update(step=step, z_deg=float(np.rad2deg(batch['z_range'])), wall_s=wall0 + elapsed,
                            steps_per_s=(step - start) / max(elapsed, 1e-9))
                if rank == 0:
                    log.info(' '.join(f'{key}={val:.5g}' if isinstance(val, float) else f'{key}={val}'
                                      for key, val in mean.items()))
                    bar.set_postfix(loss=f"{mean['loss']:.3f}", val=f"{mean['val']:.3f}")
                if on_log is not None:
                    on_log(mean)
            stop = ((cfg.time_limit_s > 0 and elapsed >= cfg.time_limit_s) or step == cfg.stop_at_step
                    or step >= cfg.steps or _over_ranks(got[0], ddp, device, 'MAX') > 0)
            if check is not None and (step % cfg.sweep_val_every == 0 or stop):   # stop covers the last step
                err = sweep_check_deg(model, orch, sweep, frames)
                log.info('sweep_check_deg=%.3f step=%d', err, step)
                if err < check['best_deg']:
                    check.update(best_deg=err, best_step=step)
                    best_state = copy.deepcopy((model.state_dict(), orch.state_dict()))
                check['last_deg'] = err
            if rank == 0 and (time.time() - last_ck >= cfg.ckpt_every_s or stop or step == cfg.steps):
                save_checkpoint(ck_path, cfg, model, orch, opts, step, wall0 + elapsed, data_desc, scaler.state_dict(),
                                budget.record)
                last_ck = time.time()
            if stop:
                break
    stopped_by = _over_ranks(got[0], ddp, device, 'MAX')
    bar.close()
    if rank == 0:
        save_checkpoint(ck_path, cfg, model, orch, opts, step, wall0 + time.time() - t0, data_desc,
                        scaler.state_dict(), budget.record)
        log.info('%s step %d wall_s %.1f', f'stopped by {signal.Signals(stopped_by).name} at' if stopped_by
                 else 'done', step, wall0 + time.time() - t0)
        if check is not None:   # the best checked state, the warm start included, as a checkpoint of its own
            model.load_state_dict(best_state[0])
            orch.load_state_dict(best_state[1])
            save_checkpoint(out / 'best.pt', cfg, model, orch, opts, check['best_step'], wall0 + time.time() - t0,
                            data_desc, extra={'sweep_check': check})
            log.info('sweep check: best %.2f deg at step %d (start %.2f, last %.2f) -> best.pt', check['best_deg'],
                     check['best_step'], check['start_deg'], check.get('last_deg', check['start_deg']))
    if ddp:
        dist.barrier()
    if stopped_by:
        raise TrainingStopped(stopped_by, step, str(ck_path))
    return ck_path
