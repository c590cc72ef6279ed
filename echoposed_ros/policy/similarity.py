"""How much a live frame looks like the target view: the fine stage's measurement (docs/method.md section 6).

:class:`ViewMatcher` holds a target view, one image or a cine loop of one cardiac cycle
``(T, H, W)``, and scores a live frame ``(H, W)`` by the normalised cross-correlation (NCC)
over the fan's pixels only (``mask``), the mean of the NCC of the raw frames (sharp, exact at the
peak) and of the frames blurred by Gaussians of ``sigma_px`` and ``2 sigma_px`` pixels (smooth, a
wide basin), each
against its best-matching target frame or the best mix of two consecutive ones: a live frame is
compared with its own cardiac phase in the cine, so every frame is a sample whatever the phase.
Scores are in [-1, 1]; 1 is the same image up to gain and offset. Pure numpy and scipy; images are
float intensities of any scale.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from ..estimator.fan import fan_region
from .errors import PolicyError

__all__ = ['ViewMatch', 'ViewMatcher', 'fan_mask', 'fit_to', 'ncc']

Array = NDArray[np.float64]


class ViewMatch(NamedTuple):
    """A live frame against the target: ``score`` in [-1, 1] (NaN for a frame with no contrast inside
    the fan, e.g. blank) and ``phase``, the index of the best-matching target frame."""

    score: float
    phase: int


def ncc(a: ArrayLike, b: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Plain normalised cross-correlation of two equal-shape images over ``mask`` (all pixels when None);
    NaN when either has no contrast there. The reference the matcher is tested against."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        x, y = x[m], y[m]
    x, y = x.ravel() - x.mean(), y.ravel() - y.mean()
    d = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum() / d) if d > 0 else float('nan')


def fan_mask(frames: ArrayLike, threshold: float = 0.0, erode_px: int = 1) -> NDArray[np.bool_]:
    """The fan of target frames (T, H, W) or (H, W) whose outside is dark: pixels above ``threshold`` in
    any frame, gaps closed, holes filled, the largest region, shrunk by ``erode_px`` (edge pixels
    interpolated with the dark outside are left out). Raises PolicyError when nothing is left."""
    t = np.asarray(frames, dtype=np.float64)
    t = t[None] if t.ndim == 2 else t
    if t.ndim != 3:
        raise PolicyError(f'fan mask: expected (H, W) or (T, H, W) frames, got shape {np.shape(frames)}')
    m = fan_region((t > threshold).any(axis=0))
    if not m.any():
        raise PolicyError(f'fan mask: no pixel above {threshold:g}; is the target image blank?')
    if erode_px > 0:
        m = ndimage.binary_erosion(m, iterations=int(erode_px))
    if m.sum() < 4:
        raise PolicyError('fan mask: the target fan has fewer than 4 pixels')
    return m


def fit_to(image: ArrayLike, shape: tuple[int, int]) -> Array:
    """``image`` (H, W) resampled to ``shape``; unchanged when it already has it. Shrinking averages: by
    whole factors, the mean of each block (as slicing at the smaller size would sample it); else a
    Gaussian blur of half the factor before bilinear resampling. Speckle otherwise aliases into noise
    that the view match would read as a change of view."""
    a = np.asarray(image, dtype=np.float64)
    if a.shape == tuple(shape):
        return a
    if a.ndim != 2:
        raise PolicyError(f'fit_to: expected a 2D image, got shape {a.shape}')
    fy, fx = a.shape[0] / shape[0], a.shape[1] / shape[1]
    if fy == int(fy) and fx == int(fx) and fy >= 1 and fx >= 1:
        ky, kx = int(fy), int(fx)
        return a.reshape(shape[0], ky, shape[1], kx).mean(axis=(1, 3))
    if fy > 1 or fx > 1:
        a = ndimage.gaussian_filter(a, (max(0.0, 0.5 * fy), max(0.0, 0.5 * fx)), mode='nearest')
    return ndimage.zoom(a, (shape[0] / a.shape[0], shape[1] / a.shape[1]), order=1, mode='nearest', grid_mode=True)


class _Stack:
    """Target frames prepared for one blur: zero mean, unit norm over the mask, (T, P)."""

    def __init__(self, frames: Array, mask: NDArray[np.bool_], sigma_px: float) -> None:
        self.mask, self.sigma_px = mask, sigma_px
        z = np.stack([self.normalised(f) for f in frames])
        bad = ~np.isfinite(z).all(axis=1)
        if bad.any():
            raise PolicyError(f'view target: frame(s) {np.flatnonzero(bad).tolist()} have no contrast inside the mask')
        self.z = z
        self.pair_cos = np.einsum('tp,tp->t', z, np.roll(z, -1, axis=0))  # cos between frame k and k+1

    def normalised(self, image: Array) -> Array:
        f = ndimage.gaussian_filter(image, self.sigma_px, mode='nearest') if self.sigma_px > 0 else image
        x = f[self.mask]
        x = x - x.mean()
        n = float(np.linalg.norm(x))
        return x / n if n > 1e-12 else np.full_like(x, np.nan)

    def match(self, image: Array) -> ViewMatch:
        z = self.normalised(image)
        if not np.isfinite(z).all():
            return ViewMatch(float('nan'), -1)
        scores = self.z @ z
        k = int(np.argmax(scores))
        best = float(scores[k])
        if len(scores) >= 2:
            # Between two consecutive cine frames (cyclic): the best non-negative mix a z_k + b z_k+1, what
            # a live phase between them shows. Its cosine with z is |projection| when both weights are
            # >= 0 (else a single frame, counted above).
            c, s0, s1 = self.pair_cos, scores, np.roll(scores, -1)
            det = 1.0 - c * c
            ok = det > 1e-9
            safe = np.where(ok, det, 1.0)
            a, b = (s0 - c * s1) / safe, (s1 - c * s0) / safe
            inside = ok & (a >= 0) & (b >= 0)
            if inside.any():
                proj = np.where(inside, np.sqrt(np.maximum(a * s0 + b * s1, 0.0)), -np.inf)
                j = int(np.argmax(proj))
                if proj[j] > best:
                    best, k = float(proj[j]), j
        return ViewMatch(float(np.clip(best, -1.0, 1.0)), k)


class ViewMatcher:
    """Scores live frames against a target image or cine (module docstring).

    ``target``: (H, W) or (T, H, W) float intensities; ``mask``: (H, W) bool, the pixels to compare
    (the fan; None = every pixel); ``sigma_px``: the finer of the two blurs of the smooth terms of the
    score in pixels (0 = raw frames only). Raises PolicyError for a malformed target or mask, or a target frame with
    no contrast.
    """

    def __init__(self, target: ArrayLike, mask: ArrayLike | None = None, sigma_px: float = 2.0) -> None:
        t = np.asarray(target, dtype=np.float64)
        if t.ndim == 2:
            t = t[None]
        if t.ndim != 3 or t.shape[0] < 1 or min(t.shape[1:]) < 2:
            raise PolicyError(f'view target: expected an image (H, W) or a cine (T, H, W) with H, W >= 2, '
                              f'got shape {np.shape(target)}')
        if not np.isfinite(t).all():
            raise PolicyError('view target: expected finite intensities, got NaN or infinity')
        if not (math.isfinite(sigma_px) and sigma_px >= 0):
            raise PolicyError(f'view target: sigma_px must be a finite number of pixels >= 0, got {sigma_px!r}')
        shape = t.shape[1:]
        m = np.ones(shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if m.shape != shape:
            raise PolicyError(f'view target: mask shape {m.shape} does not match the target frames {shape}')
        if m.sum() < 4:
            raise PolicyError(f'view target: the mask keeps {int(m.sum())} pixels; expected at least 4')
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.mask = m
        self.sigma_px = float(sigma_px)
        self.frames = int(t.shape[0])
        blurs = (self.sigma_px, 2.0 * self.sigma_px) if self.sigma_px > 0 else ()
        self._stacks = [_Stack(t, m, 0.0)] + [_Stack(t, m, b) for b in blurs]

    def match(self, image: ArrayLike) -> ViewMatch:
        """The live frame ``image`` (H, W) against the target: the score and the best target frame (of the raw
        comparison). Raises PolicyError for a frame of another shape or with NaN; a blank frame scores NaN."""
        a = np.asarray(image, dtype=np.float64)
        if a.shape != self.shape:
            raise PolicyError(f'view match: live frame shape {a.shape} does not match the target {self.shape}')
        if not np.isfinite(a).all():
            raise PolicyError('view match: live frame has NaN or infinite pixels')
        matches = [s.match(a) for s in self._stacks]
        return ViewMatch(float(np.mean([m.score for m in matches])), matches[0].phase)
