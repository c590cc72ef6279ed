"""A run sized by wall time (``echoposed train --time-budget 30m``).

The loop measures its step rate over a window of early steps, then sets ``steps`` so that the whole
schedule (warm-up, then cosine decay to ``final_lr_frac``) ends inside the budget; the budget also
stops the run as a safety net. The window is the second half of the warm-up (at least
``MEASURE_STEPS`` steps): the decay needs ``steps`` only from then on, and by then the data workers
have filled their caches (a run that first generates its phantom patients measured a fifth of its
later rate over steps 6-45, and stopped after a fifth of its budget).
Times are training wall seconds (``wall_s`` of the log and checkpoint, summed over resumes).
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable

from . import TrainingError
from .config import TrainConfig

__all__ = ['MEASURE_SKIP', 'MEASURE_STEPS', 'OPEN_STEPS', 'RESERVE_FRAC', 'RateMeter', 'TimeBudget', 'parse_duration',
           'steps_for_budget']

#: Steps left out of the measurement after the start (data workers starting, first volumes loading).
MEASURE_SKIP = 5
#: Steps timed to measure the rate (a fixed count: every DDP rank decides at the same step).
MEASURE_STEPS = 40
#: Fraction of the time left that is not planned for (the last checkpoint, the workers' end, jitter).
RESERVE_FRAC = 0.05
#: ``steps`` while the rate is measured: the schedule's end is not known yet (its warm-up does not
#: depend on it) and the batch stream runs on until the budget sets it.
OPEN_STEPS = 10**9

_UNITS = {'s': 1.0, 'm': 60.0, 'min': 60.0, 'h': 3600.0}


def parse_duration(text: str | float) -> float:
    """A duration -> seconds (> 0): '90s', '30m' (or '30min'), '2h', '1.5h'; a bare number is minutes."""
    if isinstance(text, (int, float)):
        value, unit = float(text), 'm'
    else:
        m = re.fullmatch(r'\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|m|min|h)?\s*', str(text))
        if m is None:
            raise TrainingError(f'time budget {text!r}: expected a duration such as 90s, 30m, 2h '
                                'or a number of minutes')
        value, unit = float(m.group(1)), m.group(2) or 'm'
    seconds = value * _UNITS[unit]
    if not math.isfinite(seconds) or seconds <= 0:
        raise TrainingError(f'time budget {text!r}: expected a positive duration')
    return seconds


def steps_for_budget(budget_s: float, steps_per_s: float, elapsed_s: float, done_steps: int,
                     warmup_steps: int, reserve_frac: float = RESERVE_FRAC) -> int:
    """Total steps of a schedule that ends inside ``budget_s`` seconds of training.

    ``done_steps`` steps are taken after ``elapsed_s`` seconds; the time left, less ``reserve_frac``
    of it, holds ``steps_per_s`` more steps each second. Never fewer than ``done_steps`` (a spent
    budget ends the run at once). TrainingError when the result is not beyond ``warmup_steps``: the
    learning rate would never decay, so the budget is too short for this warm-up at this rate.
    """
    if steps_per_s <= 0 or not math.isfinite(steps_per_s):
        raise TrainingError(f'step rate {steps_per_s!r}: expected a positive number of steps per second')
    left = max(0.0, budget_s - elapsed_s) * (1.0 - reserve_frac)
    steps = max(int(done_steps), int(done_steps + math.floor(steps_per_s * left)))
    if steps <= warmup_steps:
        need = elapsed_s + (warmup_steps + 1 - done_steps) / steps_per_s / (1.0 - reserve_frac)
        raise TrainingError(f'time budget {budget_s:.0f} s holds {steps} steps at the measured '
                            f'{steps_per_s:.3g} steps/s, not more than warmup_steps={warmup_steps}: give a budget '
                            f'of at least {math.ceil(need)} s or fewer warm-up steps')
    return steps


class RateMeter:
    """Steps per second over a window of steps, timed from the end of step ``start + skip``.

    Defaults: with ``warmup_steps`` still ahead of ``start``, the second half of the warm-up (at least
    ``MEASURE_SKIP`` steps skipped and ``MEASURE_STEPS`` timed); else ``MEASURE_STEPS`` steps after
    ``MEASURE_SKIP``. ``observe(done, now)`` after each step (``done`` steps completed, ``now`` a clock
    in seconds) returns ``(rate, first, last)`` once the window is complete (the steps timed are
    ``first + 1 .. last``), else None.
    """

    def __init__(self, start: int, skip: int | None = None, steps: int | None = None, warmup_steps: int = 0):
        ahead = max(0, warmup_steps - start)
        skip = max(MEASURE_SKIP, ahead // 2) if skip is None else skip
        self.first = start + skip
        self.last = self.first + (max(MEASURE_STEPS, start + ahead - self.first) if steps is None else steps)
        self._t_first: float | None = None

    def observe(self, done: int, now: float) -> tuple[float, int, int] | None:
        if done == self.first:
            self._t_first = now
        if done == self.last and self._t_first is not None:
            return (self.last - self.first) / max(now - self._t_first, 1e-9), self.first, self.last
        return None


class TimeBudget:
    """The budget's part of one run of the training loop.

    ``cfg``: the config to run with. Without a budget it is the run's own. With one, its
    ``time_limit_s`` is the budget left after the ``wall0`` seconds already trained (the safety net)
    and its ``steps``: those of ``record`` (the checkpoint's record of a schedule a budget set; a
    resume keeps it and measures nothing), else :data:`OPEN_STEPS` until :meth:`observe` has
    measured the rate and set them. ``record`` (JSON-able, for the checkpoint): budget_s,
    steps_per_s, measured_steps (first and last step timed), decided_at_step, decided_at_s, steps.
    """

    def __init__(self, cfg: TrainConfig, start: int, wall0: float, record: dict | None = None):
        self.record = dict(record) if record else None
        self.meter: RateMeter | None = None
        self.cfg, self.kept = cfg, bool(self.record)
        if self.record:       # the schedule a budget set when the run began is kept
            limit = max(cfg.time_budget_s - wall0, 1e-3) if cfg.time_budget_s > 0 else cfg.time_limit_s
            self.cfg = cfg.replace(steps=int(self.record['steps']), time_limit_s=limit)
        elif cfg.time_budget_s > 0:
            self.meter = RateMeter(start, warmup_steps=cfg.warmup_steps)
            self.cfg = cfg.replace(steps=OPEN_STEPS, time_limit_s=max(cfg.time_budget_s - wall0, 1e-3))

    @property
    def measuring(self) -> bool:
        return self.meter is not None

    def observe(self, done: int, wall_s: float, agree: Callable[[int], int] | None = None) -> TrainConfig | None:
        """After each step (``done`` steps taken, ``wall_s`` seconds trained): once the rate's window
        ends, the config with ``steps`` set by the budget (``agree``: the number all DDP ranks take,
        e.g. their minimum); else None."""
        if self.meter is None:
            return None
        got = self.meter.observe(done, wall_s)
        if got is None:
            return None
        rate, first, last = got
        steps = steps_for_budget(self.cfg.time_budget_s, rate, wall_s, done, self.cfg.warmup_steps)
        if agree is not None:
            steps = int(agree(steps))
        self.meter = None
        self.cfg = self.cfg.replace(steps=steps)
        self.record = {'budget_s': self.cfg.time_budget_s, 'steps_per_s': rate, 'measured_steps': [first + 1, last],
                       'decided_at_step': done, 'decided_at_s': wall_s, 'steps': steps}
        return self.cfg

    def summary(self) -> str:
        """One line for the log: what was measured and what it set (or kept)."""
        r = self.record
        if not r:
            return f'time budget {self.cfg.time_budget_s:.0f} s: measuring the step rate'
        end_s = r['decided_at_s'] + (r['steps'] - r['decided_at_step']) / r['steps_per_s']
        kept = ': kept' if self.kept else ''
        return (f"time budget {r['budget_s']:.0f} s{kept}: {r['steps_per_s']:.3f} steps/s measured over steps "
                f"{r['measured_steps'][0]}-{r['measured_steps'][1]}, so steps {r['steps']} "
                f'(the schedule ends at about {end_s:.0f} s of training)')
