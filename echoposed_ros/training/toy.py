"""A small analytic beating "heart" volume for tests and smoke runs (not the project's phantom).

``toy_volume(seed)`` -> Volume (T, n, n, n) float32 in [0, 1]: an ellipsoidal LV shell about the
centre, an offset RV, an atrium beyond the LV, a bright asymmetric papillary blob and speckle,
so turns about every axis change the image. Units mm; base pose (I, I).
"""
from __future__ import annotations

import numpy as np

from echoposed_sim.volume import Volume

__all__ = ['toy_volume']


def toy_volume(seed: int = 0, n: int = 48, frames: int = 4, spacing: float = 3.5) -> Volume:
    rng = np.random.default_rng(seed)
    ext = (n - 1) * spacing
    c = np.full(3, ext / 2)
    ax = np.arange(n) * spacing
    Z, Y, X = np.meshgrid(ax, ax, ax, indexing='ij')
    P = np.stack([X - c[0], Y - c[1], Z - c[2]], -1)
    jitter = rng.uniform(0.85, 1.15, 6)
    data = np.zeros((frames, n, n, n), np.float32)
    speckle = rng.gamma(2.0, 0.5, (n, n, n)).astype(np.float32)
    for f in range(frames):
        beat = 1.0 - 0.12 * np.sin(np.pi * f / frames)
        def shell(centre, radii, width, beat=beat):
            q = (P - np.asarray(centre)) / (np.asarray(radii) * beat)
            d = np.sqrt((q * q).sum(-1))
            return np.exp(-((d - 1.0) / width) ** 2)
        v = 0.9 * shell([0, 0, 0], [22 * jitter[0], 20 * jitter[1], 38 * jitter[2]], 0.18)
        v += 0.6 * shell([26 * jitter[3], 6, 5], [12, 18, 30], 0.2)
        v += 0.5 * shell([-4, 8, 55 * jitter[4]], [20, 16, 15], 0.25)
        q = (P - np.array([-9.0, 7.0 * jitter[5], 14.0])) / 5.0
        v += 0.8 * np.exp(-(q * q).sum(-1))
        data[f] = np.clip(v * speckle * 0.6, 0, 1)
    return Volume(data=data, spacing=np.full(3, spacing), centre=c, radius=70.0, cycle_s=1.0,
                  name=f'toy:{seed}', meta={'toy_seed': seed})
