"""Small statistics for the evaluation protocols: bootstrap intervals, rank correlation, ECDFs.

Pure numpy / scipy. Angles are whatever unit the caller passes (the guidance report uses degrees).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as _stats

from ..errors import EchoposedError

__all__ = ['StatsError', 'auc', 'bootstrap_ci', 'ecdf', 'p90', 'spearman', 'success_rate']

Array = NDArray[np.float64]


class StatsError(EchoposedError):
    """Bad input to a statistic (empty sample, NaN, mismatched lengths); the message names it."""


def _finite_1d(x: ArrayLike, name: str) -> Array:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise StatsError(f'{name}: empty sample')
    if not np.all(np.isfinite(a)):
        raise StatsError(f'{name}: holds NaN or inf at index {int(np.flatnonzero(~np.isfinite(a))[0])}')
    return a


def p90(x: ArrayLike, axis: int | None = None) -> Array | float:
    """90th percentile (linear interpolation, numpy's default)."""
    return np.percentile(x, 90.0, axis=axis)


def bootstrap_ci(values: ArrayLike, statistic: Callable[..., ArrayLike] = np.mean, *,
                 groups: Sequence | None = None, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval ``(lo, hi)`` of ``statistic(values)``.

    values: (N,) finite numbers; statistic: ``f(array, axis=...)`` reducing along an axis (np.mean,
    np.median, :func:`p90`); groups: optional (N,) labels: a *cluster* bootstrap resampling whole
    groups with replacement (runs on one patient are not independent), else single values;
    n_boot: resamples; level: coverage in (0, 1); seed: of the resampling generator.
    """
    x = _finite_1d(values, 'bootstrap values')
    if not 0.0 < level < 1.0:
        raise StatsError(f'bootstrap level = {level!r}; expected a coverage in (0, 1)')
    if n_boot < 1:
        raise StatsError(f'bootstrap n_boot = {n_boot!r}; expected >= 1 resamples')
    rng = np.random.default_rng(seed)
    if groups is None:
        idx = rng.integers(0, x.size, size=(n_boot, x.size))
        boots = np.asarray(statistic(x[idx], axis=1), dtype=np.float64)
    else:
        labels = np.asarray(groups)
        if labels.shape != x.shape:
            raise StatsError(f'bootstrap groups: expected {x.size} labels (one per value), got shape {labels.shape}')
        members = [x[labels == g] for g in dict.fromkeys(labels.tolist())]
        pick = rng.integers(0, len(members), size=(n_boot, len(members)))
        boots = np.array([float(statistic(np.concatenate([members[i] for i in row]), axis=0)) for row in pick])
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def spearman(x: ArrayLike, y: ArrayLike) -> float | None:
    """Spearman rank correlation of paired samples, or None when undefined (fewer than 3 pairs, or a
    constant sample). Non-finite pairs are dropped first."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    b = np.asarray(y, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise StatsError(f'spearman: x and y must pair up, got {a.size} and {b.size} values')
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(_stats.spearmanr(a, b).statistic)


def auc(positive: ArrayLike, negative: ArrayLike) -> float | None:
    """The chance that a random ``positive`` score exceeds a random ``negative`` one, ties counting half (the
    Mann-Whitney U over the number of pairs); None when either sample is empty. Non-finite scores are dropped."""
    a = np.asarray(positive, dtype=np.float64).reshape(-1)
    b = np.asarray(negative, dtype=np.float64).reshape(-1)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not a.size or not b.size:
        return None
    return float(_stats.mannwhitneyu(a, b).statistic / (a.size * b.size))


def ecdf(x: ArrayLike) -> tuple[Array, Array]:
    """Empirical CDF: (sorted values (N,), fraction <= each value (N,) in (0, 1])."""
    a = np.sort(_finite_1d(x, 'ecdf values'))
    return a, np.arange(1, a.size + 1, dtype=np.float64) / a.size


def success_rate(x: ArrayLike, tolerances: ArrayLike) -> Array:
    """Fraction of ``x`` at or below each tolerance: (M,) for (M,) tolerances (same unit as ``x``)."""
    a = _finite_1d(x, 'success values')
    tol = np.asarray(tolerances, dtype=np.float64).reshape(-1)
    return (a[None, :] <= tol[:, None]).mean(axis=1)
