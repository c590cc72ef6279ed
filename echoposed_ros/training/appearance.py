"""Randomised acquisition style of training slices: a new scanner, gain and patient window per batch.

The phantom renders every patient with one acquisition style; a real scanner differs in PSF,
time-gain compensation, gain, dynamic range, grey curve, noise, near-field clutter, rib shadows and
lateral-wall dropout. :func:`random_style` draws one such style per batch (all images of a batch
share the scanner), :func:`apply_style` re-renders slices with it: the grey levels are taken back to
echo amplitude through the default style's log compression (55 dB), changed there, and compressed
again with the drawn dynamic range and grey curve. Sector angle and depth are varied by the other
augmentations (``aug_sector_crop``, ``aug_zoom``).

Ranges (``STYLE_RANGES``) are wide on purpose: the shipped styles ``default`` and ``vendor_b`` lie
inside them; ``vendor_c`` (held out) lies partly outside (its noise and clutter).
Images (N, H, W) float32 in [0, 1], 0 outside the fan; depths in mm, angles in rad.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from echoposed_sim.sector import SectorGeometry

__all__ = ['STYLE_RANGES', 'SliceStyle', 'apply_style', 'random_style']

#: The default phantom style's dynamic range (dB): grey g in [0, 1] <-> amplitude 10^((g - 1) DR / 20).
SOURCE_DR_DB = 55.0

#: field: (low, high) of the uniform draw.
STYLE_RANGES: dict[str, tuple[float, float]] = {
    'blur_axial_px': (0.0, 1.2),        # extra PSF blur along the image rows (Gaussian sigma, px)
    'blur_lateral_px': (0.0, 1.8),      # ... along the columns
    'tgc_db': (-12.0, 12.0),            # gain change from the apex to the deepest row (dB, linear in depth)
    'gain_db': (-8.0, 10.0),
    'noise_db': (-55.0, -30.0),         # electronic noise amplitude relative to bright tissue (the 90th
                                        # percentile of the echo amplitude in the fan)
    'haze': (0.0, 1.5),                 # near-field clutter amplitude, same unit (its e-folding depth 15 mm)
    'dynamic_range_db': (35.0, 70.0),
    'gamma': (0.6, 1.6),
    'shadow_p': (0.0, 0.5),             # probability per image of one rib shadow
    'dropout_p': (0.0, 0.6),            # probability per image of lateral-wall dropout on one side
}


@dataclass(frozen=True)
class SliceStyle:
    """One drawn acquisition style (fields as ``STYLE_RANGES``)."""

    blur_axial_px: float
    blur_lateral_px: float
    tgc_db: float
    gain_db: float
    noise_db: float
    haze: float
    dynamic_range_db: float
    gamma: float
    shadow_p: float
    dropout_p: float


def random_style(rng: np.random.Generator) -> SliceStyle:
    """A style drawn uniformly within ``STYLE_RANGES``."""
    return SliceStyle(**{k: float(rng.uniform(lo, hi)) for k, (lo, hi) in STYLE_RANGES.items()})


def apply_style(rng: np.random.Generator, images: np.ndarray, sector: SectorGeometry, style: SliceStyle) -> np.ndarray:
    """Re-render ``images`` (N, H, W) of ``sector``'s fan with ``style``; returns new float32 images in [0, 1]."""
    rho, phi = sector.polar
    inside = sector.mask
    depth = np.clip(rho / max(sector.depth_mm, 1e-9), 0.0, 1.0)
    half = 0.5 * sector.angle_rad
    amp = np.power(10.0, (np.asarray(images, np.float64) - 1.0) * SOURCE_DR_DB / 20.0)
    amp[:, ~inside] = 0.0
    if style.blur_axial_px > 0.05 or style.blur_lateral_px > 0.05:
        amp = gaussian_filter(amp, (0.0, style.blur_axial_px, style.blur_lateral_px), mode='constant')
    amp *= np.power(10.0, (style.gain_db + style.tgc_db * depth) / 20.0)[None]
    n = len(amp)
    for i in range(n):
        if rng.uniform() < style.shadow_p:          # a rib shadow: a wedge beyond a shallow depth
            centre, width = rng.uniform(-half, half), rng.uniform(0.05, 0.2)
            wedge = (np.abs(phi - centre) < width / 2) & (rho > rng.uniform(10.0, 40.0))
            amp[i][wedge] *= rng.uniform(0.1, 0.5)
        if rng.uniform() < style.dropout_p:         # lateral-wall dropout at one edge of the fan
            side = 1.0 if rng.uniform() < 0.5 else -1.0
            edge = np.clip((side * phi - half * rng.uniform(0.4, 0.8)) / (0.15 * half), 0.0, 1.0)
            amp[i] *= 1.0 - rng.uniform(0.5, 0.9) * edge
    tissue = np.percentile(amp[:, inside], 90, axis=1)[:, None, None]   # (N, 1, 1)
    noise = np.power(10.0, style.noise_db / 20.0) * tissue / np.sqrt(2.0)
    noisy = rng.normal(0, 1, amp.shape) + 1j * rng.normal(0, 1, amp.shape)
    clutter = np.abs(rng.normal(0, 1, amp.shape) + 1j * rng.normal(0, 1, amp.shape)) / np.sqrt(2.0)
    amp = np.abs(amp + noise * noisy) + style.haze * tissue * np.exp(-rho / 15.0)[None] * clutter
    dr = style.dynamic_range_db
    grey = np.clip(1.0 + 20.0 * np.log10(np.maximum(amp, 1e-12)) / dr, 0.0, 1.0) ** style.gamma
    grey[:, ~inside] = 0.0
    return grey.astype(np.float32)

