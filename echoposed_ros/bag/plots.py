"""Pictures of a bag evaluation (matplotlib, Agg): one PNG per bag.

Panels: tracking error against time (offline and recorded estimates, after alignment), sigma^2
against tracking error (log sigma^2 when it spans a decade; with the Spearman correlation),
ground-truth effective error to the target against time (with the controller's estimate),
recorded latency, the last image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ['plot_bag']


def plot_bag(report: dict[str, Any], series: dict[str, Any], path: str | Path) -> Path:
    """Draw the evaluation of one bag into ``path`` (PNG); returns the path."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(22, 4.2), constrained_layout=True)
    ax = axes[0]
    for key, label in (('offline', 'offline estimator'), ('recorded', 'recorded echoposed/pose')):
        s = series.get(key)
        if s and 'error_deg' in s:
            ax.plot(s['t'], s['error_deg'], label=label, lw=1)
    ax.set_xlabel('time since the first image (s)')
    ax.set_ylabel('tracking error, aligned (deg)')
    ax.set_title('estimate vs ground truth')
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend()
    ax = axes[1]
    for key, label in (('offline', 'offline'), ('recorded', 'recorded')):
        s = series.get(key)
        if s and 'error_deg' in s:
            rho = report.get(key, {}).get('sigma_error_spearman')
            ax.scatter(s['sigma2'], s['error_deg'], s=6,
                       label=f'{label} (Spearman {"n/a" if rho is None else f"{rho:.2f}"})')
    if ax.has_data():
        sig = np.concatenate([series[k]['sigma2'] for k in ('offline', 'recorded')
                              if series.get(k) and 'error_deg' in series[k]])
        if sig.min() > 0 and sig.max() > 10 * sig.min():
            ax.set_xscale('log')
        ax.legend()
    ax.set_xlabel('sigma^2 (rad^2)')
    ax.set_ylabel('tracking error (deg)')
    ax.set_title('uncertainty vs error')
    ax.grid(alpha=0.3)
    ax = axes[2]
    s = series.get('target')
    if s:
        ax.plot(s['t'], s['error_deg'], label='actual (ground truth)')
    st = series.get('status')
    if st:
        ax.plot(st['t'], st['estimated_error_deg'], label='estimated (controller)', alpha=0.7)
    if ax.has_data():
        ax.legend()
    ax.set_xlabel('time since the first image (s)')
    ax.set_ylabel('effective error to target (deg)')
    ax.set_title(f'to target {s["name"] if s else "(none)"}')
    ax.grid(alpha=0.3)
    ax = axes[3]
    lat = series.get('latency_ms')
    if lat:
        ax.hist(lat, bins=30)
    ax.set_xlabel('latency image stamp -> pose (ms)')
    ax.set_title('recorded latency' if lat else 'recorded latency (no echoposed/pose)')
    ax = axes[4]
    image = series.get('last_image')
    if image is not None:
        ax.imshow(image, cmap='gray')
    ax.set_title('last image')
    ax.axis('off')
    fig.suptitle(f'{Path(report["bag"]).name}: {report["images"]} images, {report["recording_s"]:.1f} s')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
