"""``make_phantom(seed, style)``: one procedural beating-heart 3D+t echo volume.

Volume frame (mm): x, y lateral, z from the apical window into the body (window at small z).
The LV centre is the orbit centre ``c`` (laterally centred, ``c_z = r + 4`` mm); the apical base
pose is the identity (probe apex at ``c - r e_z`` looking along +z) with ``r`` = chest wall +
apical wall + half the LV length, drawn uniform in [70, 80] mm. Frames span one cardiac cycle, frame 0 at
end-diastole. Deterministic per (seed, style, frames, extent): same inputs, same bytes.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..volume import Volume
from .anatomy import Anatomy, HeartShape, sample_heart_shape
from .appearance import (
    HEADROOM_DB,
    N_VALVE,
    V_AMP,
    V_AX,
    V_BETA,
    V_BOUND,
    V_C,
    V_CO,
    V_LF,
    V_R,
    V_TH,
    reference_echo,
    render_frame,
)
from .errors import PhantomError
from .motion import CardiacTiming, MotionModel
from .style import AcquisitionStyle, default_style
from .views import standard_views

__all__ = ['DEFAULT_EXTENT_MM', 'GENERATOR_VERSION', 'PhantomParts', 'build_patient', 'make_phantom']

GENERATOR_VERSION = '4'   # bump whenever the output for a seed changes (cache keys)
DEFAULT_EXTENT_MM = (144.0, 144.0, 176.0)   # x, y, z


@dataclass
class PhantomParts:
    """Everything behind one phantom: the volume, labels per frame (T, Z, Y, X) uint8 or None,
    the anatomy (heart frame, shapes), motion model and timing."""

    volume: Volume
    labels: np.ndarray | None
    anatomy: Anatomy
    motion: MotionModel
    timing: CardiacTiming


def _valve_rows(anatomy: Anatomy, mitral_open: float, aortic_open: float, psf_mm: float = 1.1,
                amplitude: float = 3.5) -> np.ndarray:
    """(3, N_VALVE) kernel rows of the mitral, tricuspid and aortic valves at the given openings."""
    rows = np.zeros((3, N_VALVE))
    for n, (valve, opening) in enumerate(((anatomy.mitral, mitral_open),
                                          (anatomy.tricuspid, mitral_open),
                                          (anatomy.aortic, aortic_open))):
        row = rows[n]
        row[V_C:V_C + 3] = valve.centre
        row[V_AX:V_AX + 3] = valve.axis
        row[V_CO:V_CO + 3] = valve.centre + valve.coapt
        row[V_R] = valve.radius
        row[V_TH] = valve.thickness
        row[V_BETA] = valve.beta_closed + opening * (valve.beta_open - valve.beta_closed)
        row[V_LF] = 1.03 / math.cos(valve.beta_closed)
        row[V_AMP] = amplitude
        # every leaflet point lies within this distance of the annulus centre (plus the PSF tail)
        reach = valve.radius + float(np.linalg.norm(valve.coapt))
        row[V_BOUND] = math.hypot(reach + 1.0, row[V_LF] * reach) + valve.thickness + 3.0 * psf_mm
    return rows


def _label_grid(anatomy: Anatomy, shape: tuple[int, int, int], vox: float) -> np.ndarray:
    """End-diastolic tissue labels (Z, Y, X) uint8 on the grid, computed in slabs of z."""
    nz, ny, nx = shape
    ref_lab = np.empty(shape, np.uint8)
    yy, xx = np.meshgrid(np.arange(ny, dtype=np.float32) * np.float32(vox),
                         np.arange(nx, dtype=np.float32) * np.float32(vox), indexing='ij')
    slab = max(1, 16384 * 16 // (nx * ny))
    for k0 in range(0, nz, slab):
        k1 = min(nz, k0 + slab)
        zs = np.arange(k0, k1, dtype=np.float32) * np.float32(vox)
        pts = np.stack([np.broadcast_to(xx, (k1 - k0, ny, nx)).ravel(),
                        np.broadcast_to(yy, (k1 - k0, ny, nx)).ravel(),
                        np.repeat(zs, ny * nx)])
        ref_lab[k0:k1] = anatomy.labels(pts).reshape(k1 - k0, ny, nx)
    return ref_lab


def _valve_box(anatomy: Anatomy, shape: tuple[int, int, int], vox: float, psf_mm: float
               ) -> tuple[slice, slice, slice]:
    """(k, j, i) slices of the voxels round every leaflet's material points (end-diastole)."""
    nz, ny, nx = shape
    rows = _valve_rows(anatomy, 0.0, 0.0, psf_mm)
    reach = rows[:, V_BOUND][:, None] + 2.0 * vox
    signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], np.float64)
    corners = anatomy.to_volume((rows[:, None, V_C:V_C + 3] + reach[:, :, None] * signs[None]).reshape(-1, 3))
    lo = np.clip(np.floor(corners.min(axis=0) / vox).astype(int), 0, [nx - 1, ny - 1, nz - 1])
    hi = np.clip(np.ceil(corners.max(axis=0) / vox).astype(int) + 1, 1, [nx, ny, nz])
    return slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0])


def _override(shape: HeartShape, heart: dict | None) -> HeartShape:
    if not heart:
        return shape
    known = {f.name for f in dataclasses.fields(HeartShape)}
    unknown = sorted(str(k) for k in heart if k not in known)
    if unknown:
        raise PhantomError(f'phantom heart overrides: unknown field(s) {unknown}; expected some of {sorted(known)}')
    for key, value in heart.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PhantomError(f'phantom heart override "{key}": expected a finite number, got {value!r}')
    if 'heart_rate_bpm' in heart and not 30.0 <= heart['heart_rate_bpm'] <= 200.0:
        raise PhantomError(f'phantom heart override "heart_rate_bpm": {heart["heart_rate_bpm"]} is outside [30, 200]')
    if 'ejection_fraction' in heart and not 0.1 <= heart['ejection_fraction'] <= 0.8:
        raise PhantomError(f'phantom heart override "ejection_fraction": {heart["ejection_fraction"]} is outside '
                           f'[0.1, 0.8]')
    return dataclasses.replace(shape, **{k: float(v) for k, v in heart.items()})


def build_patient(seed: int, style: AcquisitionStyle | None = None, frames: int = 20,
                  extent_mm: tuple[float, float, float] = DEFAULT_EXTENT_MM,
                  with_labels: bool = False, heart: dict | None = None) -> PhantomParts:
    """Generate one patient; see :func:`make_phantom`. ``with_labels`` also returns the tissue
    label of every voxel at every frame (Tissue values; leaflets as Tissue.VALVE)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PhantomError(f'phantom seed must be a non-negative integer, got {seed!r}')
    if not isinstance(frames, (int, np.integer)) or not 2 <= frames <= 64:
        raise PhantomError(f'phantom frames must be an integer in [2, 64], got {frames!r}')
    extent = np.asarray(extent_mm, np.float64)
    if extent.shape != (3,) or np.any(~np.isfinite(extent)) or np.any(extent < 40):
        raise PhantomError(f'phantom extent_mm must be 3 finite values >= 40 mm, got {extent_mm}')
    style = default_style() if style is None else style
    seed = int(seed)
    s_anat, s_tex, s_noise = np.random.SeedSequence([seed, 0xEC40]).spawn(3)
    shape = _override(sample_heart_shape(np.random.default_rng(s_anat)), heart)
    vox = style.voxel_mm
    nx, ny, nz = (int(round(e / vox)) for e in extent)
    radius = shape.lv_length / 2 + 0.8 * shape.wall + shape.chest_wall
    # LV centre c: z from the window (c_z = r + 4 mm); x, y so the whole heart is centred laterally
    box_mid = np.array([(nx - 1) * vox / 2, (ny - 1) * vox / 2])
    lo, hi = Anatomy(shape, np.zeros(3), radius).heart_bounds()
    centre = np.r_[box_mid - 0.5 * (lo[:2] + hi[:2]), radius + 4.0]
    anatomy = Anatomy(shape, centre, radius)
    ref_lab = _label_grid(anatomy, (nz, ny, nx), vox)
    depth = (np.arange(nz, dtype=np.float32) * np.float32(vox) - np.float32(anatomy.probe_apex[2]))[:, None, None]
    box = _valve_box(anatomy, (nz, ny, nx), vox, style.psf_lateral_mm)
    spk_off = np.array([box[0].start, box[1].start, box[2].start], np.float64)
    env, spk = reference_echo(ref_lab, shape, style, depth, np.random.default_rng(s_tex), anatomy.probe_apex, box)
    del depth

    motion = MotionModel.from_anatomy(anatomy)
    timing = CardiacTiming(shape.heart_rate_bpm)
    data = np.empty((frames, nz, ny, nx), np.uint8)
    labels = np.empty((frames, nz, ny, nx), np.uint8) if with_labels else None
    no_labels = np.zeros((1, 1, 1), np.uint8)
    att_db_mm = 2.0 * style.attenuation_db_cm_mhz * style.frequency_mhz / 10.0 * (1.0 - style.tgc_compensation)
    max_depth = float(np.linalg.norm(extent)) + 10.0
    att_lut = 10.0 ** (-att_db_mm * np.arange(0.0, max_depth, 0.5) / 20.0)
    disp = np.array([style.gain_db - HEADROOM_DB, style.dynamic_range_db,
                     10.0 ** (style.noise_db / 20.0), style.gamma, style.psf_lateral_mm])
    spacing = np.full(3, vox)
    noise_rng = np.random.default_rng(s_noise)
    noise = noise_rng.standard_normal((1 << 20, 2), dtype=np.float32)
    offsets = noise_rng.integers(0, 1 << 20, size=frames)
    for n in range(frames):
        t = n / frames
        mp = motion.params(timing.contraction(t))
        valves = _valve_rows(anatomy, timing.mitral_open(t), timing.aortic_open(t), style.psf_lateral_mm)
        render_frame(data[n], labels[n] if labels is not None else no_labels, env, spk, spk_off, ref_lab,
                     spacing, anatomy.centre, anatomy.q, mp, valves, anatomy.probe_apex, att_lut,
                     noise, int(offsets[n]), disp)

    key_points = {k: [float(x) for x in anatomy.to_volume(v)] for k, v in anatomy.key_points().items()}
    meta = {
        'generator': 'echoposed_sim.phantom', 'generator_version': GENERATOR_VERSION,
        'seed': seed, 'style': style.as_dict(), 'style_digest': style.digest(),
        'heart': shape.as_dict(), 'heart_to_volume': anatomy.q.tolist(),
        'key_points_mm': key_points,
        'end_systole_phase': float(timing.t_es),
        'end_systole_frame': int(round(timing.t_es * frames)) % frames,
        'extent_mm': [float(e) for e in extent],
        'display_convention': 'ASE: A4C RV on image left (-x), A3C aorta on image right (+x)',
    }
    volume = Volume(data=data, spacing=spacing, centre=anatomy.centre.copy(), radius=float(radius),
                    base_orbit=np.eye(3), base_probe=np.eye(3), cycle_s=float(timing.cycle_s),
                    views=standard_views(anatomy), name=f'phantom:{seed}', meta=meta)
    return PhantomParts(volume=volume, labels=labels, anatomy=anatomy, motion=motion, timing=timing)


def make_phantom(seed: int, style: AcquisitionStyle | None = None, frames: int = 20,
                 extent_mm: tuple[float, float, float] = DEFAULT_EXTENT_MM, heart: dict | None = None) -> Volume:
    """One phantom patient as a Volume: data (frames, Z, Y, X) uint8, spacing = style voxel
    size (mm), base pose identity, standard views A4C / A2C / A3C, metadata in ``meta``.

    seed: non-negative int (same seed and style -> identical bytes); style: acquisition style
    (default: ``sim/styles/default.yaml``); frames: per cardiac cycle (frame n at phase n/frames);
    extent_mm: (x, y, z) size of the volume in mm; heart: overrides of the drawn
    :class:`HeartShape` fields, e.g. ``{'heart_rate_bpm': 110}`` (the rest still follows the seed).
    """
    return build_patient(seed, style, frames, extent_mm, heart=heart).volume
