"""Markdown report and figures (matplotlib, Agg) of the guidance evaluation (docs/evaluation.md).

Figures, one panel per dataset: ``error_vs_time.png`` (actual effective error against time,
median and inter-quartile band over runs, static and dynamic; the paper's Figure 6),
``error_cdf.png`` (empirical CDFs of initial and final error; Figure 7),
``success_vs_tolerance.png`` (share of runs within a tolerance) and ``sigma_vs_error.png``
(a run's sigma^2 against its final error, the Spearman figure). Errors in degrees.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .guidance import DatasetResult, RunResult, run_sigma2
from .stats import ecdf, success_rate

__all__ = ['TARGETS', 'plot_cdf', 'plot_error_vs_time', 'plot_sigma_vs_error', 'plot_success', 'target_checks',
           'write_report']

#: Guidance targets: (JSON path, comparison, bound, label).
TARGETS: tuple[tuple[tuple[str, ...], str, float, str], ...] = (
    (('intra_static', 'success_within_5deg'), '>=', 0.95, 'intra-patient static: share within 5 deg >= 95 %'),
    (('intra_static', 'mean_deg'), '<=', 3.0, 'intra-patient static mean final error <= 3 deg'),
    (('intra_static', 'p90_deg'), '<=', 5.0, 'intra-patient static p90 final error <= 5 deg'),
    (('intra_dynamic', 'success_within_5deg'), '>=', 0.90, 'intra-patient dynamic: share within 5 deg >= 90 %'),
    (('intra_dynamic', 'mean_deg'), '<=', 4.0, 'intra-patient dynamic mean final error <= 4 deg'),
    (('intra_dynamic', 'time_to_view_s', 'median_s'), '<=', 30.0,
     'intra-patient dynamic median time to view <= 30 s'),
    (('inter', 'discarded_share'), '<=', 0.10, 'inter-patient discarded share <= 10 %'),
    (('sigma_error_spearman',), '>=', 0.5, 'sigma^2 / final error Spearman >= 0.5'),
)

_COLOURS = {'static': 'tab:blue', 'dynamic': 'tab:orange', 'inter': 'tab:green'}


def _lookup(summary: dict[str, Any], path: tuple[str, ...]) -> float | None:
    v: Any = summary
    for key in path:
        if not isinstance(v, dict) or v.get(key) is None:
            return None
        v = v[key]
    return float(v)


def target_checks(summary: dict[str, Any]) -> list[tuple[str, float | None, bool | None]]:
    """``(label, value, met)`` for each of :data:`TARGETS` (``met`` None when the figure is missing)."""
    out = []
    for path, op, bound, label in TARGETS:
        v = _lookup(summary, path)
        met = None if v is None else (v <= bound if op == '<=' else v >= bound)
        out.append((label, v, met))
    return out


def _figure(n: int, height: float = 3.4):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n + 0.4, height), squeeze=False)
    return plt, fig, axes[0]


def _save(plt: Any, fig: Any, path: str | Path) -> Path:
    """Lay out, write (PNG, 110 dpi) and close one figure; returns its path."""
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _padded(runs: Sequence[RunResult]) -> np.ndarray:
    """(runs, steps) actual errors, each run held at its final value after it stopped (the probe holds)."""
    n = max(len(r.actual_deg) for r in runs)
    return np.stack([np.concatenate([r.actual_deg, np.full(n - len(r.actual_deg), r.actual_deg[-1])]) for r in runs])


def plot_error_vs_time(datasets: Sequence[DatasetResult], path: str | Path) -> Path:
    """Actual effective error (deg) against time (s): median and quartiles over runs, per mode."""
    plt, fig, axes = _figure(len(datasets))
    for ax, ds in zip(axes, datasets):
        for mode in ('static', 'dynamic'):
            runs = [r for r in ds.results if r.mode == mode]
            if not runs:
                continue
            e = _padded(runs)
            t = np.arange(e.shape[1]) * runs[0].dt
            q1, med, q3 = np.percentile(e, [25, 50, 75], axis=0)
            ax.fill_between(t, q1, q3, color=_COLOURS[mode], alpha=0.25, lw=0)
            ax.plot(t, med, color=_COLOURS[mode], label=f'{mode} (median, IQR; {len(runs)} runs)')
        ax.set_yscale('symlog', linthresh=1.0)
        ax.axhline(5.0, color='grey', lw=0.8, ls=':')
        ax.set_xlabel('time (s)')
        ax.set_ylabel('actual effective error (deg)')
        ax.set_title(ds.name, fontsize=9)
        ax.legend(fontsize=7)
    return _save(plt, fig, path)


def plot_cdf(datasets: Sequence[DatasetResult], path: str | Path) -> Path:
    """Empirical CDFs of the initial (dashed) and final (solid) actual effective error, per mode."""
    plt, fig, axes = _figure(len(datasets))
    for ax, ds in zip(axes, datasets):
        for mode in ('static', 'dynamic'):
            runs = [r for r in ds.results if r.mode == mode]
            if not runs:
                continue
            x, y = ecdf([r.initial_error_deg for r in runs])
            ax.step(x, y, where='post', color=_COLOURS[mode], ls='--', label=f'{mode} initial')
            x, y = ecdf([r.final_error_deg for r in runs])
            ax.step(x, y, where='post', color=_COLOURS[mode], label=f'{mode} final')
        ax.set_xscale('log')
        ax.set_xlabel('actual effective error (deg)')
        ax.set_ylabel('share of runs')
        ax.set_ylim(0, 1.02)
        ax.set_title(ds.name, fontsize=9)
        ax.legend(fontsize=7)
    return _save(plt, fig, path)


def plot_success(datasets: Sequence[DatasetResult], path: str | Path, max_deg: float = 20.0) -> Path:
    """Share of runs whose final error is within a tolerance, against the tolerance (deg)."""
    plt, fig, axes = _figure(len(datasets))
    tol = np.linspace(0.0, max_deg, 201)
    for ax, ds in zip(axes, datasets):
        for mode in ('static', 'dynamic'):
            runs = [r for r in ds.results if r.mode == mode]
            if runs:
                ax.plot(tol, success_rate([r.final_error_deg for r in runs], tol), color=_COLOURS[mode], label=mode)
        ax.axvline(5.0, color='grey', lw=0.8, ls=':')
        ax.axvline(10.0, color='grey', lw=0.8, ls=':')
        ax.set_xlabel('tolerance (deg)')
        ax.set_ylabel('success rate')
        ax.set_ylim(0, 1.02)
        ax.set_title(ds.name, fontsize=9)
        ax.legend(fontsize=7)
    return _save(plt, fig, path)


def plot_sigma_vs_error(datasets: Sequence[DatasetResult], path: str | Path, window_s: float = 1.0) -> Path:
    """Each intra run's sigma^2 (target + final window mean) against its final actual error."""
    plt, fig, axes = _figure(len(datasets))
    for ax, ds in zip(axes, datasets):
        for mode in ('static', 'dynamic'):
            runs = [r for r in ds.results if r.mode == mode]
            if runs:
                ax.scatter([run_sigma2(r, window_s) for r in runs], [r.final_error_deg for r in runs], s=10,
                           color=_COLOURS[mode], alpha=0.7, label=mode)
        rho = ds.summary.get('sigma_error_spearman')
        ax.set_title(f'{ds.name}: Spearman {rho:.2f}' if rho is not None else f'{ds.name}: Spearman n/a', fontsize=9)
        ax.set_xlabel('sigma^2 of the run (rad^2)')
        ax.set_ylabel('final actual effective error (deg)')
        ax.legend(fontsize=7)
    return _save(plt, fig, path)


def _f(v: Any, fmt: str = '.2f') -> str:
    return 'n/a' if v is None else format(v, fmt)


def _ci(s: dict[str, Any], key: str) -> str:
    ci = s.get(f'{key}_ci95_deg')
    return f'{_f(s.get(f"{key}_deg"))} [{_f(ci[0])}, {_f(ci[1])}]' if ci else _f(s.get(f'{key}_deg'))


def write_report(datasets: Sequence[DatasetResult], meta: dict[str, Any], folder: str | Path,
                 name: str = 'guidance.md') -> Path:
    """Write the figures and ``folder/name`` (Markdown); ``meta`` holds estimator, model, protocol,
    controller and wall time as in the JSON. Returns the Markdown path."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    window = float(meta.get('protocol', {}).get('sigma_window_s', 1.0))
    figs = [plot_error_vs_time(datasets, d / 'error_vs_time.png'), plot_cdf(datasets, d / 'error_cdf.png'),
            plot_success(datasets, d / 'success_vs_tolerance.png'),
            plot_sigma_vs_error(datasets, d / 'sigma_vs_error.png', window)]
    lines = ['# Guidance evaluation', '',
             f'Estimator: `{meta.get("estimator")}`' + (f' (model `{meta["model"]}`)' if meta.get('model') else '')
             + (f', test-time mirroring {"on" if meta["mirror_tta"] else "off"}'
                if meta.get('model') and 'mirror_tta' in meta else '')
             + (f', cycle fusion over {meta["fusion_window_s"]:g} s' if meta.get('fusion_window_s') else
                (', single frames (no cycle fusion)' if 'fusion_window_s' in meta else ''))
             + (f'; controller `uncertainty_threshold` {meta["controller"]["uncertainty_threshold"]} rad^2'
                if 'uncertainty_threshold' in meta.get('controller', {}) else '')
             + (f', `coast_time` {meta["controller"]["coast_time"]} s'
                if 'coast_time' in meta.get('controller', {}) else '')
             + f'; pose and control steps at {meta.get("protocol", {}).get("rate_hz", "?")} Hz; '
             f'wall time {_f(meta.get("wall_s"), ".0f")} s. Protocol and definitions: `docs/evaluation.md`.', '']
    if str(meta.get('estimator', '')).startswith('oracle'):
        lines += ['The oracle estimator checks the harness: its members are the true pose plus random noise, so '
                  'sigma^2 ranks nothing unless the noise grows with the view (`--oracle-noise-tilt-deg`).', '']
    for ds in datasets:
        s = ds.summary
        lines += [f'## {ds.name}', '', f'{len(ds.volumes)} volumes. Final actual effective error (deg), '
                  'mean / median / p90 with 95 % cluster-bootstrap intervals (resampling volumes):', '',
                  '| mode | runs | mean | median | p90 | within 5 deg | within 10 deg | initial mean | converged '
                  '| mean time (s) |',
                  '|---|---|---|---|---|---|---|---|---|---|']
        for mode in ('static', 'dynamic'):
            m = s.get(f'intra_{mode}') or {}
            if not m.get('runs'):
                continue
            lines.append(f'| {mode} | {m["runs"]} | {_ci(m, "mean")} | {_ci(m, "median")} | {_ci(m, "p90")} | '
                         f'{_f(m.get("success_within_5deg"))} | {_f(m.get("success_within_10deg"))} | '
                         f'{_f(m.get("initial_mean_deg"), ".1f")} | {_f(m.get("converged_share"))} | '
                         f'{_f(m.get("mean_time_s"), ".1f")} |')
        lines += ['', 'Time to view (start to `converged`, s; a run that never converged counts as never) and the '
                  'share of runs within each tolerance, per part of the final error (apex angle, |turn| about '
                  "the final probe's x, y, z):", '']
        for mode in ('static', 'dynamic'):
            m = s.get(f'intra_{mode}') or {}
            tv, curves = m.get('time_to_view_s'), m.get('tolerance_curves')
            if not tv or not curves or not curves.get('runs'):
                continue
            lines += [f'- {mode}: median time to view {_f(tv["median_s"], ".1f")} s (converged runs: '
                      f'{_f(tv["median_converged_s"], ".1f")} s, {tv["converged_runs"]} of {tv["runs"]}); '
                      f'share of steps in fine alignment {_f(m.get("fine_share"))}', '',
                      '| tolerance (deg) | ' + ' | '.join(f'{t:g}' for t in curves['tolerance_deg']) + ' |',
                      '|---|' + '---|' * len(curves['tolerance_deg'])]
            for part in ('effective', 'apex', 'turn_x', 'turn_y', 'turn_z'):
                lines.append(f'| {part} | ' + ' | '.join(f'{v:.2f}' for v in curves[part]) + ' |')
            lines.append('')
        for mode in ('static', 'dynamic'):
            miss = (s.get(f'intra_{mode}') or {}).get('misses')
            if not miss or not miss['runs']:
                continue
            parts = ''
            if 'median_turn_abs_xyz_deg' in miss:
                x, y, z = miss['median_turn_abs_xyz_deg']
                parts = (f'; their final error, median per part: apex {_f(miss["median_apex_deg"], ".1f")}, probe turn '
                         f'|x| {_f(x, ".1f")} / |y| {_f(y, ".1f")} / |z| {_f(z, ".1f")} deg')
            lines.append(f'- {mode}: {miss["runs"]} runs end beyond {_f(miss["tolerance_deg"], ".0f")} deg, '
                         f'{miss["quiet"]} of them quiet misses (the estimate said arrived, no hold or coast){parts}.')
        inter = s.get('inter')
        lines.append('')
        if inter:
            lines += [f'Inter-patient ({"dynamic" if inter["dynamic"] else "static"}): {inter["pairs"]} '
                      f'(volume, view) pairs, {inter["discarded_pairs"]} discarded '
                      f'(share {_f(inter["discarded_share"])}); mean dispersion '
                      f'{_f(inter["mean_dispersion_deg"])} deg; {inter["convergent_runs"]} / {inter["runs"]} runs '
                      f'convergent (threshold {inter["threshold_deg"]} deg); mean error of the kept runs to the '
                      f"patient's own view of that name {_f(inter.get('mean_own_view_error_deg'))} deg.", '',
                      '| view | pairs | discarded share | mean dispersion (deg) |', '|---|---|---|---|']
            for view, v in inter['per_view'].items():
                lines.append(f'| {view} | {v["pairs"]} | {_f(v["discarded_share"])} | '
                             f'{_f(v["mean_dispersion_deg"])} |')
        else:
            lines.append('Inter-patient: not run (needs two or more volumes with standard views).')
        lines += ['', f'sigma^2 / final error Spearman (runs): {_f(s.get("sigma_error_spearman"))} '
                  f'over {s.get("sigma_error_n_runs", 0)} runs; per step (sigma^2 vs |estimated - actual| error): '
                  f'{_f(s.get("sigma_error_spearman_steps"))}. sigma^2 picking out the runs that end beyond 5 deg '
                  f'(AUC): {_f(s.get("sigma_miss_auc"))}; the final view match (image targets) as the same ranking: '
                  f'Spearman {_f(s.get("view_match_error_spearman"))}, AUC {_f(s.get("view_match_miss_auc"))}.', '',
                  'Targets:', '']
        for label, v, met in target_checks(s):
            verdict = 'n/a' if met is None else ('met' if met else '**not met**')
            lines.append(f'- {label}: {_f(v)} ({verdict})')
        lines.append('')
    lines += ['## Figures', '']
    titles = ['Actual effective error against time (Figure 6 of the paper)',
              'Empirical CDFs of initial and final error (Figure 7)', 'Success rate against tolerance',
              'Run sigma^2 against final error']
    for title, fig in zip(titles, figs):
        lines += [f'{title}:', '', f'![{title}]({fig.name})', '']
    out = d / name
    out.write_text('\n'.join(lines))
    return out
