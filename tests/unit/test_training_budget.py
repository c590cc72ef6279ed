"""A run sized by time: the duration parser, the arithmetic, the rate meter, and a tiny budgeted run."""
from __future__ import annotations

import functools
import json
import os
import socket

import pytest
import torch.multiprocessing as mp

from echoposed_ros.cli import main
from echoposed_ros.training import TrainingError
from echoposed_ros.training import budget as budget_module
from echoposed_ros.training.budget import (
    MEASURE_SKIP,
    MEASURE_STEPS,
    OPEN_STEPS,
    RateMeter,
    TimeBudget,
    parse_duration,
    steps_for_budget,
)
from echoposed_ros.training.checkpoint import read_checkpoint
from echoposed_ros.training.config import TrainConfig
from echoposed_ros.training.optim import lr_factor
from echoposed_ros.training.toy import toy_volume
from echoposed_ros.training.train import train

TOY = functools.partial(toy_volume, n=20, frames=2, spacing=8.0)


@pytest.mark.parametrize('text, seconds', [('90s', 90.0), ('30m', 1800.0), ('30min', 1800.0), ('2h', 7200.0),
                                           ('1.5h', 5400.0), ('0.5', 30.0), (' 45 s ', 45.0), (2.5, 150.0)])
def test_durations_in_seconds_minutes_and_hours(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize('text', ['', 'soon', '30d', '-5m', '0s', 'm30', 'nan'])
def test_a_bad_duration_names_the_text_and_the_forms(text):
    with pytest.raises(TrainingError, match=r'time budget .*(90s, 30m, 2h|positive)'):
        parse_duration(text)


def test_steps_fill_the_time_left_less_the_reserve():
    # 10 steps/s, 600 s budget, nothing done yet: 6000 steps less 5 %
    assert steps_for_budget(600.0, 10.0, 0.0, 0, 200) == 5700
    # 50 steps done in 20 s: 580 s left hold 5510 more
    assert steps_for_budget(600.0, 10.0, 20.0, 50, 200) == 50 + 5510
    # resumed after 500 s and 4000 steps: only the time left counts
    assert steps_for_budget(600.0, 10.0, 500.0, 4000, 200, reserve_frac=0.0) == 5000
    # a spent budget ends the run at once
    assert steps_for_budget(600.0, 10.0, 700.0, 6500, 200) == 6500
    # more time, more steps; a faster rate, more steps
    assert steps_for_budget(1200.0, 10.0, 0.0, 0, 200) > steps_for_budget(600.0, 10.0, 0.0, 0, 200)
    assert steps_for_budget(600.0, 20.0, 0.0, 0, 200) > steps_for_budget(600.0, 10.0, 0.0, 0, 200)


def test_a_budget_too_short_for_the_warm_up_says_what_would_do():
    with pytest.raises(TrainingError, match=r'holds 95 steps .* warmup_steps=200: give a budget of at least 43 s'):
        steps_for_budget(20.0, 5.0, 0.0, 0, 200)
    with pytest.raises(TrainingError, match='step rate'):
        steps_for_budget(20.0, 0.0, 0.0, 0, 2)


def test_the_meter_times_its_window_after_the_skipped_steps():
    meter = RateMeter(start=100, skip=2, steps=4)
    # steps end at 1 s intervals, except that the first (workers starting) takes 30 s
    clock = {101: 30.0, 102: 31.0, 103: 31.5, 104: 32.0, 105: 32.5, 106: 33.0, 107: 34.0}
    got = [meter.observe(done, now) for done, now in clock.items()]
    assert got[:5] == [None] * 5
    assert got[5] == (pytest.approx(2.0), 102, 106)   # steps 103-106 in 2 s
    assert got[6] is None


def test_a_budget_sets_the_steps_once_and_a_resume_keeps_them():
    cfg = TrainConfig(time_budget_s=100.0, warmup_steps=10, steps=20000, workers=0)
    b = TimeBudget(cfg, start=0, wall0=0.0)
    assert b.measuring and b.cfg.steps == OPEN_STEPS and b.cfg.time_limit_s == 100.0
    decided = None
    for done in range(1, MEASURE_SKIP + MEASURE_STEPS + 1):
        decided = b.observe(done, 0.1 * done)        # 10 steps/s
    assert decided is not None and not b.measuring
    # 45 steps in 4.5 s; 95.5 s left, less 5 %, at 10 steps/s
    assert decided.steps == 45 + 907 and b.record['steps_per_s'] == pytest.approx(10.0)
    assert b.record['measured_steps'] == [MEASURE_SKIP + 1, MEASURE_SKIP + MEASURE_STEPS]
    assert 'steps 952' in b.summary()
    # a resume after 60 s: the same steps, measured nowhere, the time left as the limit
    again = TimeBudget(cfg, start=400, wall0=60.0, record=b.record)
    assert not again.measuring and again.cfg.steps == 952 and again.cfg.time_limit_s == pytest.approx(40.0)
    assert again.observe(450, 65.0) is None and 'kept' in again.summary()
    # no budget: the run's own config
    assert TimeBudget(cfg.replace(time_budget_s=0.0), 0, 0.0).cfg == cfg.replace(time_budget_s=0.0)


def test_the_flag_sets_the_budget_and_refuses_steps_or_minutes_beside_it(capsys):
    assert main(['train', '--time-budget', '30m', '--print-config']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['time_budget_s'] == 1800.0 and out['time_limit_s'] == 0.0
    for extra in (['--steps', '100'], ['--minutes', '5']):
        assert main(['train', '--time-budget', '30m', *extra, '--print-config']) == 2
        assert 'give it without --steps and --minutes' in capsys.readouterr().out
    assert main(['train', '--time-budget', 'soon', '--print-config']) == 2
    assert "time budget 'soon'" in capsys.readouterr().out


class FakeClock:
    """``time.time`` for the training loop: each call advances 50 ms, so a step (two calls) takes
    0.1 s whatever the machine is doing, and the budget's arithmetic can be checked exactly."""

    def __init__(self) -> None:
        self.now = 1.0e9

    def time(self) -> float:
        self.now += 0.05
        return self.now


def test_a_budget_ends_on_time_with_the_learning_rate_at_its_final_fraction(tmp_path, monkeypatch):
    import types

    from echoposed_ros.training import train as train_module
    monkeypatch.setattr(train_module, 'time', types.SimpleNamespace(time=FakeClock().time))
    monkeypatch.setattr(budget_module, 'MEASURE_SKIP', 2)
    monkeypatch.setattr(budget_module, 'MEASURE_STEPS', 8)
    budget = 6.0
    cfg = TrainConfig(out_dir=str(tmp_path), train_seeds='0-1', input_size=32, poses=4, members=3,
                      widths=(4, 4, 8, 8), warmup_steps=5, z_ramp_steps=10, log_every=10, workers=0, threads=1,
                      phantom_cache_dir='', time_budget_s=budget, steps=3, ckpt_every_s=1e9)
    ck = train(cfg, factory=TOY, progress=False)
    ran, raw = read_checkpoint(ck)
    rec = raw['budget']
    # 10 steps/s measured; the schedule fills the 6 s less what the measurement took, less the reserve,
    # and runs to its end inside the budget
    assert rec['steps_per_s'] == pytest.approx(10.0) and ran.steps == rec['steps'] > 40
    assert raw['step'] == ran.steps and ran.time_limit_s == budget and raw['wall_s'] <= budget
    last_lr = lr_factor(ran, raw['step'] - 1)
    assert ran.final_lr_frac <= last_lr < ran.final_lr_frac + 0.01 < lr_factor(ran, ran.warmup_steps)
    assert json.loads((tmp_path / 'config.json').read_text())['steps'] == ran.steps
    log = (tmp_path / 'train.log').read_text()
    assert f'so steps {ran.steps}' in log and 'steps/s measured over steps 3-10' in log
    # a resume (the same command) measures nothing and keeps the schedule
    train(cfg.replace(time_budget_s=60.0), factory=TOY, progress=False)   # more time: only the safety net moves
    again, raw2 = read_checkpoint(ck)
    assert again.steps == ran.steps and raw2['budget'] == rec and raw2['step'] == ran.steps
    assert (tmp_path / 'train.log').read_text().count('measured over') == 2   # the first, then 'kept'
    assert 'kept' in (tmp_path / 'train.log').read_text()


def _ddp_budget_worker(rank: int, port: int, out: str, q) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), WORLD_SIZE='2', RANK=str(rank),
                      LOCAL_RANK=str(rank))
    budget_module.MEASURE_SKIP, budget_module.MEASURE_STEPS = 2, 8
    cfg = TrainConfig(out_dir=out, train_seeds='0-1', input_size=32, poses=4, members=3, widths=(4, 4, 8, 8),
                      warmup_steps=5, z_ramp_steps=10, log_every=1, workers=0, threads=1, phantom_cache_dir='',
                      time_budget_s=8.0)
    logs = []
    train(cfg, factory=TOY, progress=False, on_log=logs.append)
    import torch.distributed as dist
    q.put((rank, [r['step'] for r in logs]))
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_ranks_take_the_same_budgeted_steps(tmp_path):
    ctx = mp.get_context('spawn')
    q = ctx.Queue()
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    procs = [ctx.Process(target=_ddp_budget_worker, args=(r, port, str(tmp_path), q)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    steps = dict(q.get(timeout=5) for _ in range(2))
    ran, raw = read_checkpoint(tmp_path / 'last.pt')
    assert steps[0] == steps[1] and steps[0][-1] == raw['step'] > 10
    assert raw['budget']['steps'] == ran.steps


def test_the_rate_is_measured_over_the_second_half_of_a_long_warm_up():
    # a run that first generates its volumes is slow early: the window waits for the warm-up's second half
    meter = RateMeter(0, warmup_steps=200)
    assert (meter.first, meter.last) == (100, 200)
    clock = {done: (5.0 * done if done <= 40 else 200.0 + 0.25 * (done - 40)) for done in range(1, 201)}
    got = [r for done, now in clock.items() if (r := meter.observe(done, now)) is not None]
    assert got == [(pytest.approx(4.0), 100, 200)]                  # the warm rate, not the cold one
    resumed = RateMeter(300, warmup_steps=200)                     # past the warm-up: the short window
    assert (resumed.first, resumed.last) == (300 + MEASURE_SKIP, 300 + MEASURE_SKIP + MEASURE_STEPS)
