"""Cardiac cycle and myocardial motion of the phantom (in the heart frame H, mm; see anatomy.py).

Cardiac phase ``t`` in cycles, [0, 1), periodic; ``t = 0`` is end-diastole (mitral closure).
The contraction level ``f(t)`` in [0, 1] is 0 at end-diastole and 1 at end-systole.

The deformation at contraction ``f`` maps end-diastolic (material) points X to current points x
by three invertible steps, each exact both ways:

1. radial: about the LV long axis, the cavity scales by ``k_f = 1 - f (1 - k)``; the wall
   thickens as an incompressible ring; outside the epicardium the displacement fades out;
2. longitudinal: the base descends towards the fixed epicardial apex by ``f * s * (w_b - w_a)``
   (piecewise linear in w: apex fixed, atria stretched, atrial roof fixed); fades out laterally;
3. twist: rotation about +w by ``f * theta(w)``, ``theta`` linear from the apex value to the base
   value (opposite signs: seen from the apex, the apex turns counter-clockwise and the base
   clockwise in systole), fading out above the base, below the apex and laterally.

The backward map (current -> material) is what the renderer uses: every voxel looks up the
tissue (labels, speckle) at its material point, so speckle stays attached to tissue.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

__all__ = ['CardiacTiming', 'MotionModel', 'backward_points', 'forward_points']

# indices into the motion parameter vector
F, S, K, WA, WB, WROOF, LVR, LVA, WE, TW, RG0, RG1, THA, THB, FADE, ELL, WAPEX = range(17)
N_MOTION = 17
EF_MODEL_BIAS = 0.045   # measured on rendered labels, seeds 20-29 (docs/phantom.md)


@dataclass(frozen=True)
class CardiacTiming:
    """Timing of one cycle (phases in cycles) for a heart rate; systole lasts ~0.33 s."""

    heart_rate_bpm: float

    @property
    def cycle_s(self) -> float:
        return 60.0 / self.heart_rate_bpm

    def _p(self, seconds: float) -> float:
        return seconds / self.cycle_s

    @property
    def t_es(self) -> float:
        """End-systole (aortic closure), cycles."""
        return self._p(0.34 - 0.0017 * (self.heart_rate_bpm - 70.0))

    @property
    def t_mv_open(self) -> float:
        """Mitral opening (end of isovolumic relaxation), cycles."""
        return self.t_es + self._p(0.07)

    @property
    def t_atrial(self) -> float:
        """Start of atrial contraction, cycles."""
        return max(1.0 - self._p(0.17), self.t_mv_open + self._p(0.12))

    def contraction(self, t: float) -> float:
        """f(t) in [0, 1]: 0 end-diastole, 1 end-systole (LV volume falls as f rises)."""
        t = t % 1.0
        ivc = self._p(0.045)
        if t < ivc:
            return 0.0
        if t < self.t_es:
            return _smooth((t - ivc) / (self.t_es - ivc))
        if t < self.t_mv_open:
            return 1.0
        e_end = min(self.t_mv_open + self._p(0.16), self.t_atrial)
        if t < e_end:
            return 1.0 - 0.8 * _smooth((t - self.t_mv_open) / (e_end - self.t_mv_open))
        if t < self.t_atrial:
            return 0.2 - 0.05 * (t - e_end) / max(self.t_atrial - e_end, 1e-9)
        return 0.15 * (1.0 - _smooth((t - self.t_atrial) / (1.0 - self.t_atrial)))

    def mitral_open(self, t: float) -> float:
        """Atrioventricular valve opening in [0, 1] (0 closed in systole): E wave, diastasis, A wave."""
        t = t % 1.0
        quick = self._p(0.04)
        if t < self.t_mv_open:
            return 0.0
        if t < self.t_mv_open + quick:
            return _smooth((t - self.t_mv_open) / quick)
        e_end = min(self.t_mv_open + self._p(0.2), self.t_atrial)
        if t < e_end:
            return 1.0
        if t < self.t_atrial:
            return 1.0 - 0.45 * _smooth((t - e_end) / max(min(self._p(0.1), self.t_atrial - e_end), 1e-9))
        closing = 1.0 - self._p(0.05)
        if t < closing:
            return 0.55 + 0.4 * _smooth((t - self.t_atrial) / max(self._p(0.05), 1e-9))
        return 0.95 * (1.0 - _smooth((t - closing) / (1.0 - closing)))

    def aortic_open(self, t: float) -> float:
        """Aortic valve opening in [0, 1]: open during ejection only."""
        t = t % 1.0
        t0, quick = self._p(0.05), self._p(0.03)
        if t < t0 or t > self.t_es:
            return 0.0
        return min(_smooth((t - t0) / quick), _smooth((self.t_es - t) / quick))


def _smooth(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return 0.5 - 0.5 * math.cos(math.pi * x)


@dataclass(frozen=True)
class MotionModel:
    """Per-patient motion parameters (mm, rad). ``params(f)`` packs them for the kernels."""

    w_apex_epi: float
    w_apex_endo: float
    w_base: float
    w_roof: float
    lv_radius: float
    lv_a: float
    w_e: float
    wall: float
    long_shortening: float
    radial_ratio: float          # k: end-systolic / end-diastolic cavity radius
    twist_apex: float            # rad about +w at end-systole
    twist_base: float

    @classmethod
    def from_anatomy(cls, anatomy) -> MotionModel:
        s = anatomy.shape
        w_a, w_b = anatomy.w_apex_epi, anatomy.w_mv
        cav_short = s.long_shortening * (w_b - w_a) / (w_b - anatomy.w_apex_endo)
        # EF_MODEL_BIAS: the LVOT, the mitral orifice and the papillary muscles do not scale with
        # the cavity, so the rendered EF falls ~0.045 short of the ideal ellipsoid's; aim higher.
        ef = min(s.ejection_fraction + EF_MODEL_BIAS, 0.85)
        k = math.sqrt((1.0 - ef) / (1.0 - cav_short))
        tw = math.radians(s.twist_deg)
        return cls(w_apex_epi=w_a, w_apex_endo=anatomy.w_apex_endo, w_base=w_b,
                   w_roof=w_b + 0.95 * s.la_length, lv_radius=anatomy.lv_r, lv_a=anatomy.lv_a,
                   w_e=anatomy.w_e, wall=s.wall, long_shortening=s.long_shortening,
                   radial_ratio=k, twist_apex=-0.6 * tw, twist_base=0.4 * tw)

    def params(self, f: float) -> np.ndarray:
        p = np.zeros(N_MOTION)
        p[F], p[S], p[K] = f, self.long_shortening, self.radial_ratio
        p[WA], p[WB], p[WROOF] = self.w_apex_epi, self.w_base, self.w_roof
        p[LVR], p[LVA], p[WE], p[TW] = self.lv_radius, self.lv_a, self.w_e, self.wall
        p[RG0], p[RG1] = self.lv_radius + self.wall + 40.0, self.lv_radius + self.wall + 56.0
        p[THA], p[THB] = self.twist_apex, self.twist_base
        p[FADE], p[ELL], p[WAPEX] = 15.0, 15.0, self.w_apex_endo
        return p


# ---------------------------------------------------------------- scalar kernels (numba)
@numba.njit(cache=True, inline='always')
def _sstep(x):
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return x * x * (3.0 - 2.0 * x)


@numba.njit(cache=True, inline='always')
def _rc0(w, P):
    x = (min(w, P[WB]) - P[WE]) / P[LVA]
    v = 1.0 - x * x
    return P[LVR] * math.sqrt(v) if v > 0.0 else 0.0


@numba.njit(cache=True, inline='always')
def _lateral(r, P):
    return 1.0 - _sstep((r - P[RG0]) / (P[RG1] - P[RG0]))


@numba.njit(cache=True, inline='always')
def _radial_consts(w_ref, P):
    q = (1.0 - _sstep((w_ref - P[WB]) / P[FADE])) * (1.0 - _sstep((P[WA] - w_ref) / 10.0))
    f = P[F] * q
    kk = 1.0 - f * (1.0 - P[K])
    lam = 1.0 - f * P[S]
    rc = _rc0(w_ref, P)
    re = rc + P[TW]
    re2n = (kk * rc) ** 2 + (re * re - rc * rc) / lam
    d = re2n - re * re
    return kk, lam, rc, re, d


@numba.njit(cache=True, inline='always')
def _radial_fwd(r, w_ref, P):
    kk, lam, rc, re, d = _radial_consts(w_ref, P)
    ell = P[ELL]
    if r <= rc:
        return kk * r
    if r <= re:
        return math.sqrt((kk * rc) ** 2 + (r * r - rc * rc) / lam)
    if r >= re + ell:
        return r
    return math.sqrt(max(r * r + d * (1.0 - (r - re) / ell), 0.0))


@numba.njit(cache=True, inline='always')
def _radial_inv(rn, w_ref, P):
    kk, lam, rc, re, d = _radial_consts(w_ref, P)
    ell = P[ELL]
    if rn <= kk * rc:
        return rn / kk
    if rn * rn <= re * re + d:
        return math.sqrt(max(rc * rc + lam * (rn * rn - (kk * rc) ** 2), 0.0))
    if rn >= re + ell:
        return rn
    b = d / ell
    c = d * (1.0 + re / ell) - rn * rn
    return 0.5 * (b + math.sqrt(max(b * b - 4.0 * c, 0.0)))


@numba.njit(cache=True, inline='always')
def _base_now(r, P):
    return P[WB] - _lateral(r, P) * P[F] * P[S] * (P[WB] - P[WA])


@numba.njit(cache=True, inline='always')
def _long_fwd(w, r, P):
    wa, wb, wr = P[WA], P[WB], P[WROOF]
    if w <= wa or w >= wr:
        return w
    wbn = _base_now(r, P)
    if w <= wb:
        return wa + (w - wa) * (wbn - wa) / (wb - wa)
    return wbn + (w - wb) * (wr - wbn) / (wr - wb)


@numba.njit(cache=True, inline='always')
def _long_inv(wn, r, P):
    wa, wb, wr = P[WA], P[WB], P[WROOF]
    if wn <= wa or wn >= wr:
        return wn
    wbn = _base_now(r, P)
    if wn <= wbn:
        return wa + (wn - wa) * (wb - wa) / (wbn - wa)
    return wb + (wn - wbn) * (wr - wb) / (wr - wbn)


@numba.njit(cache=True, inline='always')
def _twist(wn, rn, P):
    """Twist angle (rad about +w) at a current point (w, r)."""
    wbn = _base_now(rn, P)
    w0 = P[WAPEX]
    frac = min(max((wn - w0) / (wbn - w0), 0.0), 1.0)
    th = P[THA] + (P[THB] - P[THA]) * frac
    fade = 1.0
    if wn > wbn:
        fade = 1.0 - _sstep((wn - wbn) / P[FADE])
    elif wn < P[WA]:
        fade = 1.0 - _sstep((P[WA] - wn) / 10.0)
    return P[F] * th * fade * _lateral(rn, P)


@numba.njit(cache=True, inline='always')
def _cos_sin(th):
    """cos, sin by series (|th| < 0.3 rad here; error < 1e-8), the same both ways."""
    t2 = th * th
    return 1.0 - t2 / 2.0 + t2 * t2 / 24.0 - t2 * t2 * t2 / 720.0, th * (1.0 - t2 / 6.0 + t2 * t2 / 120.0)


@numba.njit(cache=True)
def backward_point(u, v, w, P):
    """Current point (u, v, w) in H -> end-diastolic material point (mm)."""
    if P[F] == 0.0 or w < P[WA] - 10.0 or w > max(P[WROOF], P[WB] + P[FADE]):
        return u, v, w
    rn = math.sqrt(u * u + v * v)
    if rn >= P[RG1]:
        return u, v, w
    th = _twist(w, rn, P)
    c, s = _cos_sin(th)
    u, v = c * u + s * v, -s * u + c * v
    w_ref = _long_inv(w, rn, P)
    if rn < 1e-9:
        return u, v, w_ref
    r_ref = _radial_inv(rn, w_ref, P)
    g = r_ref / rn
    return u * g, v * g, w_ref


@numba.njit(cache=True)
def forward_point(u, v, w, P):
    """End-diastolic material point (u, v, w) in H -> current point at contraction P[F] (mm)."""
    if P[F] == 0.0:
        return u, v, w
    r = math.sqrt(u * u + v * v)
    rn = _radial_fwd(r, w, P) if r > 1e-9 else 0.0
    if r > 1e-9:
        u, v = u * rn / r, v * rn / r
    wn = _long_fwd(w, rn, P)
    th = _twist(wn, rn, P)
    c, s = _cos_sin(th)
    return c * u - s * v, s * u + c * v, wn


@numba.njit(cache=True)
def _map_points(pts, P, forward):
    out = np.empty_like(pts)
    for n in range(pts.shape[0]):
        if forward:
            a, b, c = forward_point(pts[n, 0], pts[n, 1], pts[n, 2], P)
        else:
            a, b, c = backward_point(pts[n, 0], pts[n, 1], pts[n, 2], P)
        out[n, 0], out[n, 1], out[n, 2] = a, b, c
    return out


def forward_points(points_h: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Material points (N, 3) mm in H -> current points at the contraction in ``params``."""
    return _map_points(np.ascontiguousarray(points_h, np.float64).reshape(-1, 3), params, True)


def backward_points(points_h: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Current points (N, 3) mm in H -> end-diastolic material points (inverse of forward)."""
    return _map_points(np.ascontiguousarray(points_h, np.float64).reshape(-1, 3), params, False)
