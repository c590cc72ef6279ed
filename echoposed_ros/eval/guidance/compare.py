"""Two guidance evaluations of the same protocol, run by run: is a change a gain?

Two JSON files of ``echoposed eval guidance`` with the same protocol and seeds draw the same starts
and targets, so their runs pair one to one (dataset, volume, mode, view, target volume, index). A
change of controller or model then rescues some runs (beyond the tolerance before, within after) and
loses others; the share within the tolerance moves by the difference. Two figures say whether that
move is more than the protocol's own scatter:

- the exact two-sided sign test on rescued against lost runs (the runs that did not change say
  nothing about which side is better);
- a 95 % interval of the paired difference in share (and in mean final error, deg) from a cluster
  bootstrap over volumes: runs on one patient are not independent.

The median time to view (start to ``converged``) is compared the same way, a run that never converged
counting as the protocol's time limit (``max_seconds``: the median is then a lower bound where half the
runs or more never converged).

Inputs are the parsed JSON documents (``dict``). The intra-patient modes are compared (static, dynamic);
inter-patient runs are scored by convergence, not by their final error, and are left out. Figures are degrees.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binomtest

from ..stats import bootstrap_ci
from .errors import GuidanceError

__all__ = ['COMPARED_MODES', 'RUN_KEY', 'Flip', 'ModeComparison', 'compare_evaluations', 'comparison_json',
           'comparison_text']

#: What pairs a run with its twin in the other evaluation (keys of a ``run_table`` row, plus the dataset).
RUN_KEY = ('volume', 'mode', 'view', 'target_volume', 'index')

#: Protocol fields that must agree for the runs to be the same draws (``protocol`` of the JSON).
_SAME_DRAWS = ('seed', 'runs', 'rate_hz', 'max_seconds', 'orbit_max_deg', 'tilt_max_deg', 'turn_max_deg',
               'target_cine')

#: The modes compared: the intra-patient ones, scored by the final error to the target (an inter-patient run's
#: score is whether it converges, not its error to the other heart's view).
COMPARED_MODES = ('static', 'dynamic')


@dataclass(frozen=True)
class Flip:
    """A run on the other side of the tolerance after the change: where (``dataset``, ``volume``, ``mode``,
    ``view``, ``index``), its final error before and after (deg) and its final controller state after."""

    dataset: str
    volume: str
    mode: str
    view: str
    index: int
    base_deg: float
    new_deg: float
    new_state: str


@dataclass(frozen=True)
class ModeComparison:
    """One dataset's runs of one intra-patient mode, paired. ``runs``: paired runs with a final error in
    both; ``unscored``: paired runs without one; shares within ``tolerance_deg`` before and after;
    ``rescued``, ``lost``: the flips; ``sign_test_p``: exact two-sided binomial test of rescued against lost (1 when
    nothing flipped); ``share_diff_ci95``: 95 % interval of the share's change (after - before, a
    fraction), ``mean_diff_deg`` and its ``mean_diff_ci95_deg``, both from a cluster bootstrap over volumes;
    ``base_time_to_view_s``, ``new_time_to_view_s``: median time to view (s; a run that never converged counts
    as the time limit) and ``time_to_view_diff_ci95_s``, the interval of their difference."""

    dataset: str
    mode: str
    tolerance_deg: float
    runs: int
    unscored: int
    base_share: float
    new_share: float
    rescued: tuple[Flip, ...]
    lost: tuple[Flip, ...]
    sign_test_p: float
    share_diff_ci95: tuple[float, float]
    base_mean_deg: float
    new_mean_deg: float
    mean_diff_deg: float
    mean_diff_ci95_deg: tuple[float, float]
    base_time_to_view_s: float
    new_time_to_view_s: float
    time_to_view_diff_ci95_s: tuple[float, float]


def _number(row: Mapping[str, Any], key: str, missing: float) -> float:
    """``row[key]`` as a float, ``missing`` where it is absent, null or not finite."""
    value = row.get(key)
    return float(value) if value is not None and math.isfinite(float(value)) else float(missing)


def _rows(doc: Mapping[str, Any], name: str) -> dict[str, dict[tuple, Mapping[str, Any]]]:
    """{dataset: {run key: run_table row}} of one evaluation; GuidanceError naming what is missing."""
    datasets = doc.get('datasets') if isinstance(doc, Mapping) else None
    if not isinstance(datasets, Mapping) or not datasets:
        raise GuidanceError(f'{name}: no "datasets" in it; expected the JSON of `echoposed eval guidance --json`')
    out: dict[str, dict[tuple, Mapping[str, Any]]] = {}
    for dataset, body in datasets.items():
        table = body.get('run_table') if isinstance(body, Mapping) else None
        if not isinstance(table, list):
            raise GuidanceError(f'{name}: dataset {dataset!r} has no "run_table"; expected the JSON of '
                                '`echoposed eval guidance --json` (written since the run table was added)')
        rows: dict[tuple, Mapping[str, Any]] = {}
        for row in table:
            try:
                key = tuple(row[k] for k in RUN_KEY)
            except (KeyError, TypeError):
                raise GuidanceError(f'{name}: dataset {dataset!r}: a run without {", ".join(RUN_KEY)}: {row!r:.200}') \
                    from None
            if key in rows:
                raise GuidanceError(f'{name}: dataset {dataset!r}: run {key} appears twice')
            rows[key] = row
        out[str(dataset)] = rows
    return out


def _check_same_draws(base: Mapping[str, Any], new: Mapping[str, Any], names: tuple[str, str]) -> None:
    pb, pn = base.get('protocol') or {}, new.get('protocol') or {}
    for field in _SAME_DRAWS:
        if pb.get(field) != pn.get(field):
            raise GuidanceError(f'protocol.{field} differs: {pb.get(field)!r} in {names[0]}, {pn.get(field)!r} in '
                                f'{names[1]}; the runs are other draws and do not pair (run both with one protocol)')


def compare_evaluations(base: Mapping[str, Any], new: Mapping[str, Any], *, tolerance_deg: float = 5.0,
                        names: tuple[str, str] = ('base', 'new'), n_boot: int = 2000,
                        seed: int = 0) -> list[ModeComparison]:
    """Pair the runs of ``base`` and ``new`` (parsed JSON of ``echoposed eval guidance``) and compare them per
    dataset and intra-patient mode (:data:`COMPARED_MODES`, in the files' order). Raises GuidanceError,
    naming the file (``names``) and what differs, when the protocols or the sets of runs differ."""
    if not (math.isfinite(tolerance_deg) and tolerance_deg > 0):
        raise GuidanceError(f'tolerance {tolerance_deg!r} deg: expected a finite angle > 0')
    rb, rn = _rows(base, names[0]), _rows(new, names[1])
    _check_same_draws(base, new, names)
    if list(rb) != list(rn):
        raise GuidanceError(f'datasets differ: {list(rb)} in {names[0]}, {list(rn)} in {names[1]}')
    limit = float((base.get('protocol') or {}).get('max_seconds') or float('inf'))   # s, a run that never converged
    out = []
    for dataset, runs_b in rb.items():
        runs_n = rn[dataset]
        for one, other, name in ((runs_b, runs_n, names[1]), (runs_n, runs_b, names[0])):
            missing = [k for k in one if k not in other]
            if missing:
                raise GuidanceError(f'dataset {dataset!r}: {len(missing)} runs have no twin in {name}, the first '
                                    f'{dict(zip(RUN_KEY, missing[0]))}; compare evaluations of the same seeds')
        for mode in (m for m in dict.fromkeys(k[1] for k in runs_b) if m in COMPARED_MODES):
            keys = [k for k in runs_b if k[1] == mode]
            out.append(_compare_mode(dataset, mode, keys, runs_b, runs_n, tolerance_deg, n_boot, seed, limit))
    return out


def _compare_mode(dataset: str, mode: str, keys: Sequence[tuple], runs_b: Mapping[tuple, Mapping[str, Any]],
                  runs_n: Mapping[tuple, Mapping[str, Any]], tol: float, n_boot: int, seed: int,
                  limit: float) -> ModeComparison:
    b = np.array([_number(runs_b[k], 'final_error_deg', float('nan')) for k in keys])
    n = np.array([_number(runs_n[k], 'final_error_deg', float('nan')) for k in keys])
    scored = np.isfinite(b) & np.isfinite(n)
    keys = [k for k, s in zip(keys, scored) if s]
    b, n = b[scored], n[scored]
    flips: dict[bool, list[Flip]] = {True: [], False: []}
    for k, x, y in zip(keys, b, n):
        if (x <= tol) != (y <= tol):
            flips[bool(y <= tol)].append(Flip(dataset, str(k[0]), mode, str(k[2]), int(k[4]), float(x), float(y),
                                              str(runs_n[k].get('final_state', ''))))
    rescued, lost = tuple(flips[True]), tuple(flips[False])
    changed = len(rescued) + len(lost)
    p = float(binomtest(len(rescued), changed, 0.5).pvalue) if changed else 1.0
    nan2 = (float('nan'), float('nan'))
    tb = np.array([_number(runs_b[k], 'time_to_view_s', limit) for k in keys])
    tn = np.array([_number(runs_n[k], 'time_to_view_s', limit) for k in keys])
    if len(keys):
        groups = [k[0] for k in keys]
        within = (n <= tol).astype(np.float64) - (b <= tol).astype(np.float64)
        share_ci = bootstrap_ci(within, np.mean, groups=groups, n_boot=n_boot, seed=seed)
        mean_ci = bootstrap_ci(n - b, np.mean, groups=groups, n_boot=n_boot, seed=seed)
        ttv_ci = nan2
        if np.all(np.isfinite(tb)) and np.all(np.isfinite(tn)):
            def median_diff(index: np.ndarray, axis: int = 0) -> np.ndarray:   # resampled runs, paired
                i = np.asarray(index, dtype=np.int64)
                return np.median(tn[i], axis=axis) - np.median(tb[i], axis=axis)
            ttv_ci = bootstrap_ci(np.arange(len(keys)), median_diff, groups=groups, n_boot=n_boot, seed=seed)
    else:
        share_ci = mean_ci = ttv_ci = nan2
    return ModeComparison(dataset=dataset, mode=mode, tolerance_deg=float(tol), runs=len(keys),
                          unscored=int((~scored).sum()), base_share=_mean(b <= tol), new_share=_mean(n <= tol),
                          rescued=rescued, lost=lost, sign_test_p=p, share_diff_ci95=share_ci,
                          base_mean_deg=_mean(b), new_mean_deg=_mean(n), mean_diff_deg=_mean(n - b),
                          mean_diff_ci95_deg=mean_ci, base_time_to_view_s=_median(tb),
                          new_time_to_view_s=_median(tn), time_to_view_diff_ci95_s=ttv_ci)


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else float('nan')


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if x.size else float('nan')


def _flip_line(f: Flip) -> str:
    view = f' {f.view}' if f.view else ''
    return f'{f.volume}{view} run {f.index}: {f.base_deg:.1f} -> {f.new_deg:.1f} deg ({f.new_state})'


def comparison_text(comparisons: Sequence[ModeComparison], names: tuple[str, str] = ('base', 'new')) -> str:
    """A plain-text report: per dataset and mode the shares, the flips, the sign test and the intervals."""
    lines = [f'before: {names[0]}', f'after:  {names[1]}']
    for c in comparisons:
        lines.append('')
        head = f'{c.dataset}, {c.mode}: {c.runs} paired runs'
        lines.append(head + (f' ({c.unscored} without a final error left out)' if c.unscored else ''))
        if not c.runs:
            continue
        lo, hi = (100 * v for v in c.share_diff_ci95)
        lines.append(f'  within {c.tolerance_deg:g} deg: {100 * c.base_share:.1f} % -> {100 * c.new_share:.1f} % '
                     f'({100 * (c.new_share - c.base_share):+.1f} points, 95 % interval [{lo:+.1f}, {hi:+.1f}])')
        lines.append(f'  run by run: {len(c.rescued)} rescued, {len(c.lost)} lost, '
                     f'{c.runs - len(c.rescued) - len(c.lost)} on the same side; sign test p = {c.sign_test_p:.2g}')
        mlo, mhi = c.mean_diff_ci95_deg
        lines.append(f'  mean final error: {c.base_mean_deg:.2f} -> {c.new_mean_deg:.2f} deg '
                     f'({c.mean_diff_deg:+.2f}, 95 % interval [{mlo:+.2f}, {mhi:+.2f}])')
        tlo, thi = c.time_to_view_diff_ci95_s
        lines.append(f'  median time to view: {c.base_time_to_view_s:.1f} -> {c.new_time_to_view_s:.1f} s '
                     f'({c.new_time_to_view_s - c.base_time_to_view_s:+.1f}, 95 % interval [{tlo:+.1f}, {thi:+.1f}])')
        lines += [f'  rescued  {_flip_line(f)}' for f in c.rescued]
        lines += [f'  lost     {_flip_line(f)}' for f in c.lost]
    return '\n'.join(lines) + '\n'


def comparison_json(comparisons: Sequence[ModeComparison], names: tuple[str, str] = ('base', 'new')) -> dict[str, Any]:
    """The comparisons as a JSON-ready dict (non-finite numbers as None)."""
    def num(x: float) -> float | None:
        return float(x) if math.isfinite(x) else None

    def flip(f: Flip) -> dict[str, Any]:
        return {'dataset': f.dataset, 'volume': f.volume, 'mode': f.mode, 'view': f.view, 'index': f.index,
                'base_deg': f.base_deg, 'new_deg': f.new_deg, 'new_state': f.new_state}

    return {'base': names[0], 'new': names[1], 'comparisons': [
        {'dataset': c.dataset, 'mode': c.mode, 'tolerance_deg': c.tolerance_deg, 'runs': c.runs,
         'unscored': c.unscored, 'base_share': num(c.base_share), 'new_share': num(c.new_share),
         'share_diff_ci95': [num(v) for v in c.share_diff_ci95], 'rescued': [flip(f) for f in c.rescued],
         'lost': [flip(f) for f in c.lost], 'sign_test_p': c.sign_test_p, 'base_mean_deg': num(c.base_mean_deg),
         'new_mean_deg': num(c.new_mean_deg), 'mean_diff_deg': num(c.mean_diff_deg),
         'mean_diff_ci95_deg': [num(v) for v in c.mean_diff_ci95_deg],
         'base_time_to_view_s': num(c.base_time_to_view_s), 'new_time_to_view_s': num(c.new_time_to_view_s),
         'time_to_view_diff_ci95_s': [num(v) for v in c.time_to_view_diff_ci95_s]}
        for c in comparisons]}
