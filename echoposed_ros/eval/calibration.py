"""Angular calibration (docs/method.md section 7; the paper's Figure 5 protocol).

Per volume, from its base (apical) pose ``(R_v0, R_p0)``: slices turned about the probe's own
z axis through the whole circle (360 slices, 1 degree steps) and about its x and y axes over
+-30 degrees (1 degree steps), i.e. probe factor ``R_p0 @ rot_axis(theta)``, orbit unchanged;
one cardiac phase (t = 0), no test-time augmentation. The predicted turn of a slice is its
predicted probe factor relative to the unturned slice's prediction in the body frame,
``P_p(0)^T P_p(theta)``, read as its twist angle about the same axis (swing-twist). Per axis:
``MAAE`` = mean absolute wrapped angle error (degrees); normalised MAAE = MAAE divided by the
MAAE of the same predictions randomly permuted across that volume's slices of that axis
(averaged over several permutations; chance = 1.0, perfect = 0.0). Volumes are pooled per axis.
sigma^2 as a quality signal: Spearman rank correlation between per-slice sigma^2 and per-slice
absolute error, over all turned slices.

The core (:func:`calibrate_volume`, :func:`summarize`) is pure: it takes a ``render`` callable
``(orbits (N, 3, 3), probes (N, 3, 3)) -> images`` and a ``predict`` callable
``images -> (orbit (N, 3, 3), probe (N, 3, 3), sigma2 (N,))``, so it runs with an oracle in
tests and with the simulator's slicer plus the ONNX estimator in ``echoposed eval calibration``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats
from scipy.spatial.transform import Rotation

from ..errors import EchoposedError
from ..geometry import rot_x, rot_y, rot_z

__all__ = ['AXES', 'CalibrationError', 'CalibrationProtocol', 'Predict', 'Render', 'VolumeCalibration',
           'applied_turns', 'calibrate_volume', 'calibrate_volumes', 'maae_by_turn', 'plot_calibration',
           'slicer_render', 'summarize', 'turn_bands_deg', 'twist_angle', 'wrap_angle']

AXES = ('x', 'y', 'z')
_ROT = {'x': rot_x, 'y': rot_y, 'z': rot_z}
_UNIT = {'x': np.array([1.0, 0, 0]), 'y': np.array([0, 1.0, 0]), 'z': np.array([0, 0, 1.0])}

Array = NDArray[np.float64]
#: (orbits (N, 3, 3), probes (N, 3, 3)) -> a batch of N images (any type ``predict`` accepts).
Render = Callable[[Array, Array], Any]
#: images -> (orbit (N, 3, 3), probe (N, 3, 3), sigma2 (N,) rad^2): canonical-gauge estimates.
Predict = Callable[[Any], tuple[Array, Array, Array]]


class CalibrationError(EchoposedError):
    """Bad calibration input (protocol field, predictor output); the message names it."""


@dataclass(frozen=True)
class CalibrationProtocol:
    """Which turns to apply. Angles in degrees (the protocol is stated in degrees).

    z_step_deg: step of the full circle about z (360 / step slices).
    tilt_range_deg, tilt_step_deg: x and y turns from -range to +range inclusive.
    t: cardiac phase of every slice (cycles). permutations: random permutations averaged for
    the chance MAAE. seed: seed of those permutations.
    """

    z_step_deg: float = 1.0
    tilt_range_deg: float = 30.0
    tilt_step_deg: float = 1.0
    t: float = 0.0
    permutations: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ('z_step_deg', 'tilt_range_deg', 'tilt_step_deg'):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise CalibrationError(f'calibration protocol {name} = {v!r}; expected a positive number of degrees')
        if self.tilt_range_deg >= 180:
            raise CalibrationError(f'calibration protocol tilt_range_deg = {self.tilt_range_deg}; expected < 180')
        if self.permutations < 1:
            raise CalibrationError(f'calibration protocol permutations = {self.permutations}; expected >= 1')


def wrap_angle(a: np.ndarray) -> np.ndarray:
    """Angles (rad) wrapped into [-pi, pi)."""
    return (np.asarray(a, dtype=np.float64) + np.pi) % (2 * np.pi) - np.pi


def applied_turns(protocol: CalibrationProtocol = CalibrationProtocol()) -> dict[str, Array]:
    """Per axis the applied turn angles (rad): z over [0, 360) degrees, x and y over [-range, +range]."""
    n_z = int(round(360.0 / protocol.z_step_deg))
    z = np.radians(np.arange(n_z) * protocol.z_step_deg)
    n_t = int(math.floor(protocol.tilt_range_deg / protocol.tilt_step_deg + 1e-9))
    tilt = np.radians(np.arange(-n_t, n_t + 1) * protocol.tilt_step_deg)
    return {'x': tilt.copy(), 'y': tilt.copy(), 'z': wrap_angle(z)}


def twist_angle(R: np.ndarray, axis: str) -> Array:
    """Twist angle (rad, in [-pi, pi)) about ``axis`` ('x', 'y' or 'z') of rotations ``(..., 3, 3)``.

    Swing-twist about the axis: ``2 atan2(q_axis, q_w)`` of the quaternion; for a pure turn
    about that axis it is the turn angle.
    """
    R = np.asarray(R, dtype=np.float64)
    q = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat()       # x, y, z, w
    i = AXES.index(axis)
    return wrap_angle(2.0 * np.arctan2(q[:, i], q[:, 3])).reshape(R.shape[:-2])


@dataclass
class VolumeCalibration:
    """One volume's result: per axis applied and predicted turns (rad) and per-slice sigma^2 (rad^2)."""

    name: str
    applied: dict[str, Array]
    predicted: dict[str, Array]
    sigma2: dict[str, Array]
    reference_sigma2: float
    meta: dict[str, Any] = field(default_factory=dict)

    def errors(self, axis: str) -> Array:
        """Absolute wrapped turn errors (rad) of one axis, per slice."""
        return np.abs(wrap_angle(self.predicted[axis] - self.applied[axis]))

    def reference_offset(self, axis: str) -> float:
        """The median signed error (rad) of one axis: how far the unturned reference slice's own estimate
        sits from its turned neighbours' (every turn is read relative to it)."""
        return float(np.median(wrap_angle(self.predicted[axis] - self.applied[axis])))

    def errors_without_reference(self, axis: str) -> Array:
        """Absolute turn errors (rad) once :meth:`reference_offset` is taken out: the turns' own error,
        whatever the one reference slice reads."""
        return np.abs(wrap_angle(self.predicted[axis] - self.applied[axis] - self.reference_offset(axis)))


def _check_prediction(out: Any, n: int) -> tuple[Array, Array, Array]:
    try:
        orbit, probe, sigma2 = (np.asarray(a, dtype=np.float64) for a in out)
    except (TypeError, ValueError):
        raise CalibrationError('predict must return (orbit (N, 3, 3), probe (N, 3, 3), sigma2 (N,))') from None
    if orbit.shape != (n, 3, 3) or probe.shape != (n, 3, 3) or sigma2.shape != (n,):
        raise CalibrationError(f'predict returned shapes {orbit.shape}, {probe.shape}, {sigma2.shape}; '
                               f'expected ({n}, 3, 3), ({n}, 3, 3), ({n},)')
    return orbit, probe, sigma2


def calibrate_volume(name: str, base_orbit: np.ndarray, base_probe: np.ndarray, render: Render,
                     predict: Predict, protocol: CalibrationProtocol = CalibrationProtocol()) -> VolumeCalibration:
    """Run the protocol on one volume (see module docstring).

    base_orbit, base_probe: (3, 3) the volume's base pose. ``render`` is called once per axis
    with that axis' turned poses (the unturned pose first), ``predict`` on what it returns.
    """
    turns = applied_turns(protocol)
    R_v0 = np.asarray(base_orbit, dtype=np.float64)
    R_p0 = np.asarray(base_probe, dtype=np.float64)
    predicted: dict[str, Array] = {}
    sig: dict[str, Array] = {}
    ref_sigma2 = math.nan
    for axis in AXES:
        theta = np.concatenate([[0.0], turns[axis]])
        probes = R_p0[None] @ _ROT[axis](theta)
        orbits = np.broadcast_to(R_v0, probes.shape).copy()
        _, P_p, s2 = _check_prediction(predict(render(orbits, probes)), theta.size)
        rel = np.swapaxes(P_p[:1], -1, -2) @ P_p[1:]            # body frame, relative to the unturned slice
        predicted[axis] = twist_angle(rel, axis)
        sig[axis] = s2[1:]
        ref_sigma2 = float(s2[0])
    return VolumeCalibration(name, turns, predicted, sig, ref_sigma2)


def summarize(results: Sequence[VolumeCalibration],
              protocol: CalibrationProtocol = CalibrationProtocol()) -> dict[str, Any]:
    """Pooled figures (JSON-ready): per axis ``maae_deg``, ``normalized_maae``, ``chance_maae_deg``,
    ``slices``, ``maae_by_turn_deg`` (MAAE per band of the applied turn's size: tilts in 10 degree
    bands up to the protocol's range, z in 45 degree bands, so errors beyond a training range show;
    for x and y also the band's sign flips and folding, see :func:`maae_by_turn`);
    ``mean_sigma2`` (rad^2); ``spearman_sigma2_error`` (rho, p) over all turned slices; and the
    same per volume under ``volumes``. Beside the protocol's figures, which read every turn relative to
    one unturned slice: ``reference_offset_deg`` (mean over volumes of |median signed error|, how far
    that slice's own estimate sits off) and ``maae_without_reference_deg`` (the error once each
    volume's offset is taken out)."""
    if not results:
        raise CalibrationError('no volumes were calibrated')
    rng = np.random.default_rng(protocol.seed)
    out: dict[str, Any] = {'axes': {}, 'volumes': []}
    chance: dict[str, list[float]] = {a: [] for a in AXES}
    per_volume_rows = []
    for r in results:
        row: dict[str, Any] = {'name': r.name, 'axes': {}}
        for axis in AXES:
            err = r.errors(axis)
            perm = np.mean([np.abs(wrap_angle(r.predicted[axis][rng.permutation(err.size)] - r.applied[axis])).mean()
                            for _ in range(protocol.permutations)])
            chance[axis].append(float(perm) * err.size)
            row['axes'][axis] = {'maae_deg': math.degrees(err.mean()),
                                 'normalized_maae': _ratio(err.mean(), perm),
                                 'reference_offset_deg': math.degrees(r.reference_offset(axis)),
                                 'maae_without_reference_deg': math.degrees(r.errors_without_reference(axis).mean())}
        row['mean_sigma2'] = float(np.mean(np.concatenate([r.sigma2[a] for a in AXES])))
        per_volume_rows.append(row)
    for axis in AXES:
        err = np.concatenate([r.errors(axis) for r in results])
        chance_mean = sum(chance[axis]) / err.size
        out['axes'][axis] = {'maae_deg': math.degrees(err.mean()),
                             'normalized_maae': _ratio(err.mean(), chance_mean),
                             'chance_maae_deg': math.degrees(chance_mean),
                             'slices': int(err.size),
                             'reference_offset_deg': math.degrees(np.mean([abs(r.reference_offset(axis))
                                                                           for r in results])),
                             'maae_without_reference_deg': math.degrees(np.concatenate(
                                 [r.errors_without_reference(axis) for r in results]).mean()),
                             'maae_by_turn_deg': maae_by_turn(
                                 np.concatenate([r.applied[axis] for r in results]), err,
                                 turn_bands_deg(axis, protocol),
                                 None if axis == 'z' else np.concatenate([r.predicted[axis] for r in results]))}
    all_err = np.concatenate([r.errors(a) for r in results for a in AXES])
    all_sig = np.concatenate([r.sigma2[a] for r in results for a in AXES])
    out['mean_sigma2'] = float(all_sig.mean())
    out['spearman_sigma2_error'] = _spearman(all_sig, all_err)
    out['volumes'] = per_volume_rows
    out['protocol'] = {'z_step_deg': protocol.z_step_deg, 'tilt_range_deg': protocol.tilt_range_deg,
                       'tilt_step_deg': protocol.tilt_step_deg, 't': protocol.t,
                       'permutations': protocol.permutations, 'seed': protocol.seed}
    return out


def turn_bands_deg(axis: str, protocol: CalibrationProtocol = CalibrationProtocol()) -> Array:
    """Band edges (degrees) of the applied turn's size for :func:`maae_by_turn`: 0, 10, 20, ...
    up to the tilt range for x and y (the last band ends at the range), 0, 45, 90, 135, 180 for z."""
    if axis == 'z':
        return np.array([0.0, 45.0, 90.0, 135.0, 180.0])
    edges = np.arange(0.0, protocol.tilt_range_deg, 10.0)
    return np.append(edges, protocol.tilt_range_deg)


def maae_by_turn(applied: Array, errors: Array, edges_deg: Array,
                 predicted: Array | None = None) -> list[dict[str, Any]]:
    """MAAE (degrees) of the slices whose applied turn size ``|applied|`` (rad) lies in each band
    ``(lo, hi]`` of ``edges_deg`` (the first band includes 0): a list of ``{lo_deg, hi_deg,
    maae_deg, slices}``, ``maae_deg`` None for an empty band.

    With ``predicted`` (rad, same shape; given for the tilts x and y), each band also says how its
    error is made: ``sign_flip_share``, the share of its turned slices (``applied`` != 0) predicted
    with the opposite sign (a tilt read as its mirror about the unturned plane), and
    ``mean_abs_predicted_deg`` against ``mean_abs_applied_deg`` over the others (a predicted size
    that stops growing is a fold at the edge of what the model learned). None for an empty band.
    """
    applied = np.asarray(applied, dtype=np.float64)
    size = np.degrees(np.abs(applied))
    err = np.asarray(errors, dtype=np.float64)
    if size.shape != err.shape:
        raise CalibrationError(f'applied turns {size.shape} and errors {err.shape} differ in shape')
    if predicted is not None:
        predicted = np.asarray(predicted, dtype=np.float64)
        if predicted.shape != size.shape:
            raise CalibrationError(f'applied turns {size.shape} and predicted turns {predicted.shape} '
                                   'differ in shape')
        flipped = np.sign(predicted) * np.sign(applied) < 0
    rows = []
    for i, (lo, hi) in enumerate(zip(edges_deg[:-1], edges_deg[1:])):
        inside = (size <= hi + 1e-9) & ((size > lo + 1e-9) if i else (size >= lo))
        row: dict[str, Any] = {'lo_deg': float(lo), 'hi_deg': float(hi), 'slices': int(inside.sum()),
                               'maae_deg': math.degrees(float(err[inside].mean())) if inside.any() else None}
        if predicted is not None:
            turned = inside & (size > 0)
            kept = turned & ~flipped
            row['sign_flip_share'] = float(flipped[turned].mean()) if turned.any() else None
            row['mean_abs_predicted_deg'] = (float(np.degrees(np.abs(predicted[kept])).mean())
                                             if kept.any() else None)
            row['mean_abs_applied_deg'] = float(size[kept].mean()) if kept.any() else None
        rows.append(row)
    return rows


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b > 0 else None


def _spearman(x: Array, y: Array) -> dict[str, float | None]:
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {'rho': None, 'p': None, 'n': int(x.size)}   # undefined for constant input
    res = stats.spearmanr(x, y)
    return {'rho': float(res.statistic), 'p': float(res.pvalue), 'n': int(x.size)}


def plot_calibration(results: Sequence[VolumeCalibration], summary: dict[str, Any], path: str) -> None:
    """Predicted against applied turn per axis (degrees), one colour per volume, like the paper's Figure 5,
    plus per-slice error against sigma^2. Writes a PNG (matplotlib, Agg)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 4, figsize=(17, 4.4))
    for ax, axis in zip(axs, AXES):
        for r in results:
            ax.plot(np.degrees(r.applied[axis]), np.degrees(r.predicted[axis]), '.', ms=2.5, alpha=0.6)
        lim = 180 if axis == 'z' else max(float(np.degrees(np.abs(r.applied[axis]).max())) for r in results)
        ax.plot([-lim, lim], [-lim, lim], 'k--', lw=1)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-180 if axis == 'z' else -2 * lim, 180 if axis == 'z' else 2 * lim)
        s = summary['axes'][axis]
        nm = s['normalized_maae']
        ax.set_title(f'about probe {axis}: MAAE {s["maae_deg"]:.1f} deg, '
                     f'norm. {nm:.2f}' if nm is not None else f'about probe {axis}')
        ax.set_xlabel('applied turn (deg)')
        ax.set_ylabel('predicted turn (deg)')
        ax.grid(alpha=0.3)
    ax = axs[3]
    for r in results:
        ax.plot(np.concatenate([r.sigma2[a] for a in AXES]),
                np.degrees(np.concatenate([r.errors(a) for a in AXES])), '.', ms=2, alpha=0.5)
    lo = min(float(np.min(r.sigma2[a])) for r in results for a in AXES)
    hi = max(float(np.max(r.sigma2[a])) for r in results for a in AXES)
    if lo > 0 and hi / lo > 20:
        ax.set_xscale('log')
    sp = summary['spearman_sigma2_error']
    ax.set_title(f'error vs sigma^2 (Spearman {sp["rho"]:.2f})' if sp['rho'] is not None else 'error vs sigma^2')
    ax.set_xlabel('sigma^2 (rad^2)')
    ax.set_ylabel('absolute turn error (deg)')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def slicer_render(volume: Any, sector: Any, t: float = 0.0) -> Render:
    """A :data:`Render` slicing ``volume`` (an ``echoposed_sim`` Volume) with ``sector`` (its
    ``SectorGeometry``) at cardiac phase ``t``: returns float32 ``(N, H, W)`` images."""
    from echoposed_sim.slicer import slice_batch

    def render(orbits: Array, probes: Array) -> np.ndarray:
        return slice_batch(volume, orbits, probes, np.full(len(orbits), float(t)), sector)
    return render


def calibrate_volumes(volumes: Iterable[Any], predict: Predict, sector: Any,
                      protocol: CalibrationProtocol = CalibrationProtocol(),
                      progress: bool = False) -> tuple[list[VolumeCalibration], dict[str, Any]]:
    """Calibrate simulator volumes (each with ``name``, ``base_orbit``, ``base_probe``) by slicing
    them with ``sector``; returns the per-volume results and :func:`summarize`'s figures."""
    results = []
    items = volumes
    if progress:
        from tqdm import tqdm
        items = tqdm(volumes, desc='calibration', unit='volume')
    for vol in items:
        render = slicer_render(vol, sector, protocol.t)
        results.append(calibrate_volume(vol.name, vol.base_orbit, vol.base_probe, render, predict, protocol))
    return results, summarize(results, protocol)
