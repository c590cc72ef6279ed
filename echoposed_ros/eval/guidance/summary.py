"""The figures of the guidance evaluation: final-error statistics with bootstrap intervals, misses,
inter-patient convergence, discarded shares and dispersion, the sigma^2 / error rank correlation,
and the per-dataset summary of the JSON. Inputs are :class:`RunResult`; figures are degrees.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...geometry import Pose, angle, angle_between, effective_pose, project_to_so3
from ...policy import GuidanceState
from ..stats import auc, bootstrap_ci, p90, spearman, success_rate
from .errors import GuidanceError
from .protocol import GuidanceProtocol
from .result import RunResult, state_share

__all__ = ['TOLERANCES_DEG', 'converged_runs', 'dispersion_deg', 'inter_pair_summary', 'mean_effective_pose',
           'miss_auc', 'run_sigma2', 'sigma_error_spearman', 'state_shares', 'summarize_dataset',
           'summarize_final_errors', 'summarize_inter', 'summarize_misses', 'time_to_view', 'tolerance_curves']

#: deg, the tolerances of the success curves.
TOLERANCES_DEG = tuple(float(t) for t in range(1, 11))

Array = NDArray[np.float64]


def summarize_final_errors(final_deg: Sequence[float], groups: Sequence | None = None, *,
                           initial_deg: Sequence[float] | None = None, n_boot: int = 2000,
                           seed: int = 0) -> dict[str, Any]:
    """Mean, median and p90 of final errors (deg) with 95 % bootstrap intervals (cluster bootstrap over
    ``groups`` when given), success within 5 and 10 degrees, and the initial error's mean and median."""
    x = np.asarray(final_deg, dtype=np.float64)
    out: dict[str, Any] = {'runs': int(x.size)}
    if x.size == 0:
        return out
    for key, fn in (('mean', np.mean), ('median', np.median), ('p90', p90)):
        out[f'{key}_deg'] = float(fn(x))
        out[f'{key}_ci95_deg'] = list(bootstrap_ci(x, fn, groups=groups, n_boot=n_boot, seed=seed))
    out['success_within_5deg'] = float(np.mean(x <= 5.0))
    out['success_within_10deg'] = float(np.mean(x <= 10.0))
    if initial_deg is not None:
        a = np.asarray(initial_deg, dtype=np.float64)
        out['initial_mean_deg'] = float(np.mean(a))
        out['initial_median_deg'] = float(np.median(a))
    return out


def summarize_misses(runs: Sequence[RunResult], tol_deg: float = 5.0) -> dict[str, Any]:
    """What the runs that end beyond ``tol_deg`` have in common: how many, how many of them are
    quiet misses (:meth:`RunResult.quiet_miss`: the estimator believed it had arrived), and the
    median of each part of their final error (deg): apex angle and ``|turn|`` about the final
    probe's x (lateral tilt), y (elevation tilt) and z (the beam)."""
    miss = [r for r in runs if r.final_error_deg > tol_deg]
    out: dict[str, Any] = {'tolerance_deg': tol_deg, 'runs': len(miss),
                           'quiet': int(sum(r.quiet_miss(tol_deg) for r in miss))}
    parts = [p for p in (r.final_error_parts_deg() for r in miss) if p is not None]
    if parts:
        apex = np.array([p[0] for p in parts])
        turn = np.abs(np.array([p[1] for p in parts]))
        out['median_apex_deg'] = float(np.median(apex))
        out['median_turn_abs_xyz_deg'] = [float(v) for v in np.median(turn, axis=0)]
    return out


def mean_effective_pose(poses: Pose) -> tuple[Array, Array]:
    """Projected mean of effective poses: ``u_bar = normalise(mean u)``, ``R_bar = proj_SO3(mean R)``."""
    e = effective_pose(poses)
    u = e.u.mean(axis=0)
    norm = float(np.linalg.norm(u))
    if norm < 1e-9:
        raise GuidanceError('mean_effective_pose: the beam directions cancel out; no mean direction')
    return u / norm, project_to_so3(e.R.mean(axis=0), 'mean of R')


def dispersion_deg(poses: Pose) -> float:
    """Mean effective distance (deg) of ``poses`` (N, 3, 3 each) from their projected mean."""
    if len(poses.orbit) == 0:
        raise GuidanceError('dispersion_deg: no poses')
    u_bar, R_bar = mean_effective_pose(poses)
    e = effective_pose(poses)
    d = np.hypot(angle_between(e.u, np.broadcast_to(u_bar, e.u.shape)),
                 angle(np.swapaxes(e.R, -1, -2) @ R_bar))
    return float(np.degrees(d.mean()))


def converged_runs(results: Sequence[RunResult], threshold_deg: float, window_s: float) -> NDArray[np.bool_]:
    """The convergence rule: reached ``converged``, or median estimated error over the last
    ``window_s`` seconds at most ``threshold_deg`` (NaN estimates, e.g. none at all, do not count)."""
    out = []
    for r in results:
        w = r.estimated_deg[r.window(window_s)]
        finite = w[np.isfinite(w)]
        out.append(bool(r.converged or (finite.size > 0 and float(np.median(finite)) <= threshold_deg)))
    return np.asarray(out, dtype=bool)


def inter_pair_summary(results: Sequence[RunResult], convergent: Sequence[bool]) -> dict[str, Any]:
    """One (volume, view) pair: kept when at least half its runs converge; dispersion over the
    convergent runs' final effective poses (None when discarded or fewer than 2 converge)."""
    ok = np.asarray(convergent, dtype=bool)
    n, m = len(results), int(ok.sum())
    kept = n > 0 and 2 * m >= n
    disp = None
    if kept and m >= 2:
        finals = [r.final_pose for r, c in zip(results, ok) if c]
        disp = dispersion_deg(Pose(np.stack([g.orbit for g in finals]), np.stack([g.probe for g in finals])))
    own = [r.final_error_deg for r, c in zip(results, ok) if c and np.isfinite(r.final_error_deg)]
    return {'runs': n, 'convergent': m, 'kept': bool(kept), 'dispersion_deg': disp,
            'own_view_error_deg': float(np.mean(own)) if own else None}


def summarize_inter(results: Sequence[RunResult], protocol: GuidanceProtocol) -> dict[str, Any] | None:
    """Discarded share and mean dispersion (deg) over (volume, view) pairs; None without inter runs."""
    runs = [r for r in results if r.mode == 'inter']
    if not runs:
        return None
    ok = converged_runs(runs, protocol.inter_threshold_deg, protocol.inter_window_s)
    pairs: dict[tuple[str, str, str], list[int]] = {}
    for i, r in enumerate(runs):
        pairs.setdefault((r.volume, r.view, r.target_volume), []).append(i)
    table = []
    for (vol, view, partner), ids in pairs.items():
        s = inter_pair_summary([runs[i] for i in ids], ok[ids])
        table.append({'volume': vol, 'view': view, 'target_volume': partner, **s})
    kept = [p for p in table if p['kept']]
    disp = [p['dispersion_deg'] for p in kept if p['dispersion_deg'] is not None]
    own = [p['own_view_error_deg'] for p in kept if p['own_view_error_deg'] is not None]
    per_view = {}
    for view in sorted({p['view'] for p in table}):
        rows = [p for p in table if p['view'] == view]
        d = [p['dispersion_deg'] for p in rows if p['kept'] and p['dispersion_deg'] is not None]
        per_view[view] = {'pairs': len(rows), 'discarded_share': float(np.mean([not p['kept'] for p in rows])),
                          'mean_dispersion_deg': float(np.mean(d)) if d else None}
    return {'pairs': len(table), 'discarded_pairs': len(table) - len(kept),
            'discarded_share': float((len(table) - len(kept)) / len(table)),
            'mean_dispersion_deg': float(np.mean(disp)) if disp else None,
            'runs': len(runs), 'convergent_runs': int(ok.sum()),
            'threshold_deg': protocol.inter_threshold_deg, 'window_s': protocol.inter_window_s,
            'dynamic': protocol.inter_dynamic,
            'uncertain_target_share': float(np.mean([r.target_uncertain for r in runs])),
            'mean_own_view_error_deg': float(np.mean(own)) if own else None,
            'per_view': per_view, 'pair_table': table}


def run_sigma2(result: RunResult, window_s: float) -> float:
    """A run's uncertainty: the target image's sigma^2 plus the mean sigma^2 over its last ``window_s``."""
    return float(result.target_sigma2 + np.mean(result.sigma2[result.window(window_s)]))


def sigma_error_spearman(results: Sequence[RunResult], window_s: float = 1.0) -> dict[str, Any]:
    """Spearman of sigma^2 against actual error: per run (:func:`run_sigma2` vs the final actual
    effective error; the headline) and per step (the image's sigma^2 vs the absolute gap between
    the estimated and the actual effective error), over runs with a known target."""
    runs = [r for r in results if np.isfinite(r.final_error_deg)]
    s_run = [run_sigma2(r, window_s) for r in runs]
    e_run = [r.final_error_deg for r in runs]
    s_step = np.concatenate([r.sigma2 for r in runs]) if runs else np.zeros(0)
    gap = np.concatenate([np.abs(r.estimated_deg - r.actual_deg) for r in runs]) if runs else np.zeros(0)
    return {'runs': spearman(s_run, e_run) if runs else None, 'n_runs': len(runs),
            'steps': spearman(s_step, gap) if runs else None, 'n_steps': int(np.isfinite(gap).sum())}


def time_to_view(runs: Sequence[RunResult]) -> dict[str, Any]:
    """Seconds from the start to ``converged``: the median over all runs (a run that never converged counts as
    never, so the median is None when half or more never did) and over the converged ones."""
    t = np.array([r.time_to_view_s for r in runs], dtype=np.float64)
    done = t[np.isfinite(t)]
    return {'median_s': float(np.median(t)) if t.size and np.isfinite(np.median(t)) else None,
            'median_converged_s': float(np.median(done)) if done.size else None,
            'converged_runs': int(done.size), 'runs': int(t.size)}


def state_shares(runs: Sequence[RunResult]) -> dict[str, float]:
    """Share of all the runs' control steps in each controller state, by state name."""
    return {state.label: state_share(runs, state) for state in GuidanceState}


def tolerance_curves(runs: Sequence[RunResult], tolerances_deg: Sequence[float] = TOLERANCES_DEG) -> dict[str, Any]:
    """Share of runs ending within each tolerance (deg): the effective error and each part of it, the apex
    angle and ``|turn|`` about the final probe's x, y and z (runs with a known target)."""
    parts = [(r.final_error_deg, r.final_error_parts_deg()) for r in runs]
    parts = [(e, p) for e, p in parts if p is not None and np.isfinite(e)]
    out: dict[str, Any] = {'tolerance_deg': [float(t) for t in tolerances_deg], 'runs': len(parts)}
    if not parts:
        return out
    values = {'effective': np.array([e for e, _ in parts]), 'apex': np.array([p[0] for _, p in parts])}
    turns = np.abs(np.array([p[1] for _, p in parts]))
    for i, axis in enumerate('xyz'):
        values[f'turn_{axis}'] = turns[:, i]
    for name, v in values.items():
        out[name] = [float(f) for f in success_rate(v, tolerances_deg)]
    return out


def miss_auc(scores: Sequence[float], final_deg: Sequence[float], tol_deg: float = 5.0) -> float | None:
    """How well ``scores`` (higher = worse) pick out the runs ending beyond ``tol_deg``: the probability that a
    random miss scores above a random arrival (ties count half; the Mann-Whitney AUC). None without both."""
    x, e = np.asarray(scores, dtype=np.float64), np.asarray(final_deg, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(e)
    return auc(x[ok & (e > tol_deg)], x[ok & (e <= tol_deg)])


def summarize_dataset(results: Sequence[RunResult], protocol: GuidanceProtocol) -> dict[str, Any]:
    """The per-dataset figures of the JSON (docs/evaluation.md)."""
    out: dict[str, Any] = {}
    for mode in ('static', 'dynamic'):
        runs = [r for r in results if r.mode == mode]
        s = summarize_final_errors([r.final_error_deg for r in runs], [r.volume for r in runs],
                                   initial_deg=[r.initial_error_deg for r in runs], n_boot=protocol.n_boot,
                                   seed=protocol.seed)
        if runs:
            s['converged_share'] = float(np.mean([r.converged for r in runs]))
            s['mean_time_s'] = float(np.mean([r.time_s for r in runs]))
            s['hold_share'] = state_share(runs, GuidanceState.HOLD_UNCERTAIN)
            s['coast_share'] = state_share(runs, GuidanceState.COASTING)
            s['uncertain_target_share'] = float(np.mean([r.target_uncertain for r in runs]))
            s['misses'] = summarize_misses(runs)
            s['time_to_view_s'] = time_to_view(runs)
            s['state_shares'] = state_shares(runs)
            s['fine_share'] = state_share(runs, GuidanceState.FINE_ALIGNING)
            s['tolerance_curves'] = tolerance_curves(runs)
        out[f'intra_{mode}'] = s
    out['inter'] = summarize_inter(results, protocol)
    intra = [r for r in results if r.mode in ('static', 'dynamic')]
    sp = sigma_error_spearman(intra, protocol.sigma_window_s)
    out['sigma_error_spearman'] = sp['runs']
    out['sigma_error_spearman_steps'] = sp['steps']
    out['sigma_error_n_runs'] = sp['n_runs']
    runs = [r for r in intra if np.isfinite(r.final_error_deg)]
    errors = [r.final_error_deg for r in runs]
    out['sigma_miss_auc'] = miss_auc([run_sigma2(r, protocol.sigma_window_s) for r in runs], errors)
    # the fine alignment's second opinion: 1 - the final view match, as a ranking of the final error
    mismatch = [1.0 - float(r.view_match[-1]) if r.view_match is not None and len(r.view_match) else float('nan')
                for r in runs]
    keep = [i for i, m in enumerate(mismatch) if np.isfinite(m)]
    out['view_match_error_spearman'] = (spearman([mismatch[i] for i in keep], [errors[i] for i in keep])
                                        if len(keep) > 2 else None)
    out['view_match_miss_auc'] = miss_auc(mismatch, errors)
    return out
