"""The training loop: a few real steps, checkpoint, resume, and DDP with 2 gloo processes."""
from __future__ import annotations

import functools
import os
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp

from echoposed_ros.training import TrainingError
from echoposed_ros.training.checkpoint import load_checkpoint
from echoposed_ros.training.config import TrainConfig
from echoposed_ros.training.toy import toy_volume
from echoposed_ros.training.train import train

TOY = functools.partial(toy_volume, n=20, frames=2, spacing=8.0)


def _cfg(out, **kw) -> TrainConfig:
    base = dict(out_dir=str(out), train_seeds='0-1', input_size=32, poses=4, members=3, widths=(4, 4, 8, 8),
                steps=6, warmup_steps=2, z_ramp_steps=3, log_every=2, workers=0, threads=1,
                phantom_cache_dir='')
    base.update(kw)
    return TrainConfig(**base)


def test_few_steps_write_log_and_checkpoint_and_resume_matches_a_straight_run(tmp_path):
    logs = []
    ck = train(_cfg(tmp_path / 'a'), factory=TOY, progress=False, on_log=logs.append)
    cfg, model, orch, raw = load_checkpoint(ck)
    assert raw['step'] == 6 and cfg.members == 3 and raw['data']['seeds'] == '0-1'
    assert [r['step'] for r in logs] == [2, 4, 6]
    assert all(r['loss'] == r['loss'] and r['loss'] > 0 for r in logs)  # finite, positive
    text = (tmp_path / 'a' / 'train.log').read_text()
    assert 'val=' in text and 'res_p_deg=' in text and 'done step 6' in text
    # Stopped early (a time limit after 1 step; stop_at_step 4), then resumed to 6: the weights
    # and adapters of the straight run.
    for out, stop, at in ((tmp_path / 'b', {'time_limit_s': 1e-9}, 1), (tmp_path / 'c', {'stop_at_step': 4}, 4)):
        train(_cfg(out, **stop), factory=TOY, progress=False)
        assert load_checkpoint(out / 'last.pt')[3]['step'] == at
        train(_cfg(out), factory=TOY, progress=False)
        _, model_b, orch_b, raw_b = load_checkpoint(out / 'last.pt')
        assert raw_b['step'] == 6
        for (name, p), q in zip(model.state_dict().items(), model_b.state_dict().values()):
            assert torch.allclose(p, q, atol=1e-5), (out.name, name)
        assert torch.allclose(orch.adapter_probe, orch_b.adapter_probe, atol=1e-5)


def test_resume_refuses_a_different_config_and_names_the_field(tmp_path):
    train(_cfg(tmp_path, steps=2), factory=TOY, progress=False)
    with pytest.raises(TrainingError, match=r'differs .* in w_orbit: checkpoint 50.0, now 3.0;') as e:
        train(_cfg(tmp_path, steps=4, w_orbit=3.0), factory=TOY, progress=False)
    assert 'steps' not in str(e.value)  # only the offending field is named


def test_resume_takes_new_logging_and_checkpoint_intervals(tmp_path):
    train(_cfg(tmp_path, steps=2), factory=TOY, progress=False)
    ck = train(_cfg(tmp_path, steps=4, log_every=1, ckpt_every_s=60.0), factory=TOY, progress=False)
    cfg, _, _, raw = load_checkpoint(ck)
    assert raw['step'] == 4 and cfg.log_every == 1 and cfg.ckpt_every_s == 60.0


def test_warm_start_takes_weights_and_adapters_and_refuses_another_layout(tmp_path):
    src = train(_cfg(tmp_path / 'src', steps=4), factory=TOY, progress=False)
    _, model_src, orch_src, _ = load_checkpoint(src)
    # zero steps: the warm-started run holds exactly the source's weights and adapters
    ck = train(_cfg(tmp_path / 'warm', steps=0, init_from=str(src), loss='cauchy'), factory=TOY,
               progress=False)
    _, model_w, orch_w, raw = load_checkpoint(ck)
    assert raw['step'] == 0 and 'warm start from' in (tmp_path / 'warm' / 'train.log').read_text()
    for (name, p), q in zip(model_src.state_dict().items(), model_w.state_dict().values()):
        assert torch.equal(p, q), name
    assert torch.equal(orch_src.adapter_probe, orch_w.adapter_probe)
    with pytest.raises(TrainingError, match='init_from .*layout'):
        train(_cfg(tmp_path / 'other', steps=1, init_from=str(src), widths=(4, 4, 8, 16)), factory=TOY,
              progress=False)


def test_a_blend_of_a_fine_tune_and_its_warm_start_lies_between_them(tmp_path):
    from echoposed_ros.training.blend import blend_checkpoint
    src = train(_cfg(tmp_path / 'src', steps=2), factory=TOY, progress=False)
    tuned = train(_cfg(tmp_path / 'tuned', steps=3, init_from=str(src)), factory=TOY, progress=False)
    _, m_src, _, _ = load_checkpoint(src)
    _, m_tuned, orch_tuned, raw_tuned = load_checkpoint(tuned)
    a, b = m_src.state_dict(), m_tuned.state_dict()
    moved = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], b[k])]
    assert moved                                             # the fine-tune changed some weights
    for alpha in (0.0, 0.3, 1.0):
        out = blend_checkpoint(tuned, src, alpha, tmp_path / f'blend{alpha}.pt')
        _, m, orch, raw = load_checkpoint(out)
        c = m.state_dict()
        for k in a:
            want = alpha * b[k] + (1 - alpha) * a[k] if b[k].is_floating_point() else b[k]
            assert torch.allclose(c[k], want, atol=1e-6), k
        assert raw['blend'] == {'alpha': alpha, 'original': str(src)} and raw['step'] == raw_tuned['step']
        assert torch.equal(orch.adapter_probe, orch_tuned.adapter_probe)   # the members' adapters: the fine-tune's
    other = train(_cfg(tmp_path / 'other', steps=1, widths=(4, 4, 8, 16)), factory=TOY, progress=False)
    with pytest.raises(TrainingError, match='not the same architecture|is \\('):
        blend_checkpoint(tuned, other, 0.5, tmp_path / 'x.pt')
    with pytest.raises(TrainingError, match='blend alpha 1.5'):
        blend_checkpoint(tuned, src, 1.5, tmp_path / 'x.pt')


def test_a_teacher_holds_the_members_near_the_warm_start(tmp_path):
    src = train(_cfg(tmp_path / 'src', steps=4), factory=TOY, progress=False)
    _, teacher, _, _ = load_checkpoint(src)
    images = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0))

    def drift(distill_weight: float) -> float:
        logs = []
        out = tmp_path / f'd{distill_weight}'
        train(_cfg(out, steps=8, init_from=str(src), distill_weight=distill_weight, muon_lr=0.05),
              factory=TOY, progress=False, on_log=logs.append)
        assert all(('distill' in r) == (distill_weight > 0) for r in logs)
        _, model, _, _ = load_checkpoint(out / 'last.pt')
        with torch.no_grad():
            a, b = (torch.cat(m.eval()(images), 1) for m in (model, teacher))
        return float((a - b).square().mean())

    free, held = drift(0.0), drift(50.0)
    assert held < 0.5 * free, (held, free)
    # a teacher that reads each pose at two phases: its mean reading is the target
    logs = []
    train(_cfg(tmp_path / 'phases', steps=2, init_from=str(src), distill_weight=1.0, distill_phases=2),
          factory=TOY, progress=False, on_log=logs.append)
    assert logs and all(r['distill'] > 0 for r in logs)
    assert 'distill=' in (tmp_path / 'd50.0' / 'train.log').read_text()
    with pytest.raises(TrainingError, match='distill_weight.*init_from'):
        _cfg(tmp_path / 'x', distill_weight=1.0).validated()


def test_validation_member_does_not_update(tmp_path):
    # one step: member step % K = 0 rests, the others move
    train(_cfg(tmp_path, steps=1, warmup_steps=1), factory=TOY, progress=False)
    _, model, _, _ = load_checkpoint(tmp_path / 'last.pt')
    torch.manual_seed(0)
    fresh = _cfg(tmp_path)
    from echoposed_ros.training.checkpoint import build_model
    torch.manual_seed(fresh.seed)
    init, _ = build_model(fresh)
    for m, moved in ((0, False), (1, True), (2, True)):
        same = all(torch.equal(a, b) for a, b in zip(model.member_parameters(m), init.member_parameters(m)))
        assert same is not moved


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str, q) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    cfg = _cfg(out, steps=3, log_every=1)
    logs = []
    train(cfg, factory=TOY, progress=False, on_log=logs.append)
    import torch.distributed as dist
    q.put((rank, [r['loss'] for r in logs]))
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_gloo_processes_stay_in_sync(tmp_path):
    ctx = mp.get_context('spawn')
    q = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, str(tmp_path), q)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    losses = dict(q.get(timeout=5) for _ in range(2))
    assert len(losses[0]) == len(losses[1]) == 3
    assert losses[0] != losses[1]  # each rank saw its own data
    _, _, _, raw = load_checkpoint(tmp_path / 'last.pt')
    assert raw['step'] == 3


def test_bf16_precision_trains_with_float32_weights_and_is_named_in_errors(tmp_path):
    logs = []
    ck = train(_cfg(tmp_path / 'bf', precision='bf16'), factory=TOY, progress=False, on_log=logs.append)
    cfg, model, _, _ = load_checkpoint(ck)
    assert cfg.precision == 'bf16'
    assert all(r['loss'] == r['loss'] and r['loss'] > 0 for r in logs)  # finite, positive
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # the same steps in float32 start from the same loss, to bf16's precision
    ref = []
    train(_cfg(tmp_path / 'fp'), factory=TOY, progress=False, on_log=ref.append)
    assert abs(logs[0]['loss'] - ref[0]['loss']) < 0.05 * ref[0]['loss']
    with pytest.raises(TrainingError, match="precision='fp16'"):   # fp16 is CUDA's (test_training_device.py)
        _cfg(tmp_path / 'x', precision='fp16', device='cpu').validated()


def _signalled_worker(signum: int, ignore: bool, world: int, rank: int, port: int, out: str, q,
                      group: bool = False) -> None:
    """Train; at step 2 (rank 0) the process sends itself ``signum``; report what happened.

    group: train with a data worker process and send the signal to the whole process group, as
    Ctrl-C in a terminal or ``pkill -f`` on the command line do (the worker gets it too)."""
    import signal

    from echoposed_ros.training import TrainingStopped
    if group:
        os.setpgrp()
    if world > 1:
        os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                          LOCAL_RANK=str(rank))
    if ignore:
        signal.signal(signum, signal.SIG_IGN)
    else:  # as in a foreground shell, whatever this test runs under (a background job ignores SIGINT)
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    before = signal.getsignal(signum)

    def on_log(rec):
        if rec['step'] == 2 and rank == 0:
            if group:
                workers = mp.active_children()
                os.killpg(os.getpgid(0), signum)
                time.sleep(1.0)  # the rest of a slow step: the worker's fate is known by now
                fates.append([w.is_alive() for w in workers])
            else:
                os.kill(os.getpid(), signum)

    fates = []  # group: is each data worker still alive a second after the signal?
    # with a worker: more steps than it prefetches, so that it is still running at step 2
    steps, workers = (40, 1) if group else (6, 0)
    try:
        train(_cfg(out, steps=steps, log_every=1, workers=workers), factory=TOY, progress=False, on_log=on_log)
        stopped = None
    except TrainingStopped as e:
        stopped = (e.signum, e.step, str(e))
    q.put((rank, stopped, signal.getsignal(signum) == before, fates))
    if world > 1:
        import torch.distributed as dist
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize('signame, ignore, world, group', [
    ('SIGINT', False, 1, False), ('SIGTERM', False, 1, False), ('SIGINT', True, 1, False),
    ('SIGTERM', False, 2, False), ('SIGINT', False, 1, True), ('SIGTERM', False, 1, True)])
def test_a_signal_ends_the_step_checkpoints_it_and_an_ignored_one_stays_ignored(tmp_path, signame, ignore, world,
                                                                                 group):
    import signal
    signum = int(getattr(signal, signame))
    ctx = mp.get_context('spawn')
    q = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_signalled_worker, args=(signum, ignore, world, r, port, str(tmp_path), q, group))
             for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]  # no process died of it
    got = [q.get(timeout=5) for _ in procs]
    reports = {rank: (stopped, restored) for rank, stopped, restored, _ in got}
    if group:  # the worker leaves the signal to the training process, which ends it after the step
        assert got[0][3] == [[True]], got[0][3]
    raw = load_checkpoint(tmp_path / 'last.pt')[3]
    log = (tmp_path / 'train.log').read_text()
    assert all(restored for _, restored in reports.values())  # the process's own handler is back
    if ignore:  # a background job's SIGINT: ignored before, ignored during training
        assert all(stopped is None for stopped, _ in reports.values()) and raw['step'] == 6
        return
    for stopped, _ in reports.values():  # every rank stops after the step under way
        assert stopped is not None and stopped[0] == signum and stopped[1] == 2, stopped
        assert signame in stopped[2] and 'last.pt' in stopped[2] and 'resumes' in stopped[2]
    assert raw['step'] == 2 and f'stopped by {signame} at step 2' in log


def test_resume_from_a_damaged_checkpoint_names_the_file(tmp_path):
    (tmp_path / 'last.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(TrainingError, match=r'last\.pt: not a usable echoposed checkpoint'):
        train(_cfg(tmp_path), factory=TOY, progress=False)


def _volume_folder(folder, broken: bool):
    from echoposed_sim.volume_io import save_volume
    folder.mkdir()
    if broken:
        (folder / 'broken.npz').write_text('not a volume')
    else:
        save_volume(TOY(0), folder / 'heart.npz')
    (folder / 'heart.npz.yaml').write_text('spacing: [8.0, 8.0, 8.0]\n')   # a sidecar is not a volume
    (folder / 'NOTES.txt').write_text('scanned 2026-12-01')
    return folder


def test_a_volume_folder_trains_on_its_volume_files_only(tmp_path):
    folder = _volume_folder(tmp_path / 'vols', broken=False)
    cfg = _cfg(tmp_path / 'out', train_seeds='', volumes_dir=str(folder), steps=2, workers=1)
    _, _, _, raw = load_checkpoint(train(cfg, progress=False))
    assert raw['data']['files'] == ['heart.npz']


@pytest.mark.slow
def test_bad_data_in_a_worker_ends_the_run_with_one_error_and_no_worker_left(tmp_path):
    import multiprocessing
    folder = _volume_folder(tmp_path / 'vols', broken=True)
    cfg = _cfg(tmp_path / 'out', train_seeds='', volumes_dir=str(folder), steps=4, workers=2)
    with pytest.raises(TrainingError, match=r'data for step \d: .*broken\.npz') as caught:
        train(cfg, progress=False)
    assert '\n' not in str(caught.value)
    # The workers ignore SIGTERM: one left behind would hang the interpreter's exit.
    assert not multiprocessing.active_children()


@pytest.mark.slow
def test_a_bug_in_a_worker_keeps_its_traceback_and_leaves_no_worker(tmp_path):
    import multiprocessing

    def broken_factory(key):
        raise RuntimeError(f'bug while loading {key}')

    with pytest.raises(RuntimeError, match='bug while loading'):
        train(_cfg(tmp_path, steps=4, workers=2), factory=broken_factory, progress=False)
    assert not multiprocessing.active_children()
