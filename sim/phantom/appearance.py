"""Echo appearance: reflectivity per tissue, 3D speckle, valves, attenuation, noise, log compression.

Pipeline (amplitudes are linear, 1.0 = nominal myocardium):

1. once per patient, at end-diastole: reflectivity field (tissue amplitude x slow texture) times
   complex white scatterers, convolved with an anisotropic Gaussian PSF (sigmas along volume
   x, y, z = lateral, elevation, axial), envelope ``|.|`` -> the reference echo ``env``; also a
   pure unit-mean speckle field ``spk`` for the leaflets;
2. per frame (numba kernel :func:`render_frame`): each voxel takes its material point from the
   motion model's backward map and samples ``env`` there (trilinear), so speckle is attached to
   tissue; leaflets are drawn at their current opening; residual depth attenuation (after TGC,
   depth from the apical window); complex electronic noise (fresh each frame, seeded);
   log compression to the style's dynamic range, gamma, uint8.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from scipy import ndimage

from .anatomy import Tissue
from .motion import backward_point
from .style import AcquisitionStyle

__all__ = ['HEADROOM_DB', 'cavity_clutter', 'reference_echo', 'render_frame', 'specular_boost', 'tissue_amplitudes',
           'trabeculae', 'wall_angle_factor']

HEADROOM_DB = 30.0   # nominal myocardium (amplitude 1) sits this far below white before gain

# valve row layout for the kernel
V_C, V_AX, V_CO, V_R, V_TH, V_BETA, V_LF, V_AMP, V_BOUND = 0, 3, 6, 9, 10, 11, 12, 13, 14
N_VALVE = 15
_VALVE_LABEL = np.uint8(Tissue.VALVE)   # label the kernel writes on leaflets
LUT_N = 4096   # mantissa table size of the fast log2 (error < 2e-4 in log2)


def tissue_amplitudes(shape) -> np.ndarray:
    """(len(Tissue),) float32 linear amplitude per tissue label for one patient (HeartShape)."""
    a = np.zeros(len(Tissue), np.float32)
    myo = shape.echo_myocardium
    a[Tissue.TISSUE] = shape.echo_tissue
    a[Tissue.LUNG] = 0.22
    a[Tissue.PLEURA] = 2.5
    a[Tissue.SKIN] = 2.5
    a[Tissue.SUBCUT] = 0.3
    a[Tissue.MUSCLE] = 0.75
    a[Tissue.FAT] = 1.2
    a[Tissue.PERICARDIUM] = shape.echo_pericardium
    a[Tissue.MYOCARDIUM] = myo
    a[Tissue.ATRIAL_WALL] = 1.0 * myo
    a[Tissue.AORTIC_WALL] = 3.5
    a[Tissue.ANNULUS] = 4.0
    for b in (Tissue.BLOOD_LV, Tissue.BLOOD_RV, Tissue.BLOOD_LA, Tissue.BLOOD_RA, Tissue.BLOOD_AO):
        a[b] = shape.echo_blood
    a[Tissue.VALVE] = 3.5
    return a


def _psf_sigmas(style: AcquisitionStyle) -> tuple[float, float, float]:
    """PSF sigmas in voxels along array axes (z, y, x)."""
    v = style.voxel_mm
    return style.psf_axial_mm / v, style.psf_elevation_mm / v, style.psf_lateral_mm / v


def _blurred_noise_norm(sig: tuple[float, float, float]) -> float:
    """Mean envelope of unit-variance complex white noise after the PSF blur (Rayleigh mean)."""
    n = 2 * int(math.ceil(3 * max(sig))) + 3
    d = np.zeros((n, n, n), np.float64)
    d[n // 2, n // 2, n // 2] = 1.0
    k = ndimage.gaussian_filter(d, sig, truncate=3.0)
    return math.sqrt(float(np.sum(k * k)) * math.pi / 2.0)


def _beam_dot(blood: np.ndarray, probe: np.ndarray, voxel_mm: float, sigma_mm: float, truncate: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the blood mask smoothed over ``sigma_mm``: (grad . r, |grad|^2, |r|^2 + 1), each (Z, Y, X)
    float32, r the vector (mm) from ``probe`` ((3,) mm in V) to the voxel (the beam's direction)."""
    b = ndimage.gaussian_filter(blood.astype(np.float32), sigma_mm / voxel_mm, truncate=truncate)
    gz, gy, gx = np.gradient(b)
    del b
    nz, ny, nx = blood.shape
    z = (np.arange(nz, dtype=np.float32) * np.float32(voxel_mm) - np.float32(probe[2]))[:, None, None]
    y = (np.arange(ny, dtype=np.float32) * np.float32(voxel_mm) - np.float32(probe[1]))[None, :, None]
    x = (np.arange(nx, dtype=np.float32) * np.float32(voxel_mm) - np.float32(probe[0]))[None, None, :]
    dot = gx * x
    dot += gy * y
    dot += gz * z
    return dot, gx * gx + gy * gy + gz * gz, x * x + y * y + z * z + np.float32(1.0)


def specular_boost(blood: np.ndarray, probe: np.ndarray, voxel_mm: float, gain: float = 8.0) -> np.ndarray:
    """Extra amplitude (Z, Y, X) float32 at blood/tissue interfaces: ``gain |grad B| cos^2``,
    B the blood mask smoothed over ~1 mm, cos the angle between the interface normal and the
    beam from ``probe`` (the apical window, (3,) mm in V)."""
    dot, g2, dist2 = _beam_dot(blood, probe, voxel_mm, 1.0, 2.5)
    return np.float32(gain) * dot * dot / (np.sqrt(g2) + np.float32(1e-6)) / dist2


def wall_angle_factor(blood: np.ndarray, probe: np.ndarray, voxel_mm: float, anisotropy: float) -> np.ndarray:
    """Amplitude factor (Z, Y, X) float32 of the myocardium for the beam angle: ``1 - a (1 - cos^2)``,
    cos between the beam from ``probe`` ((3,) mm in V) and the wall normal (the gradient of the
    blood mask smoothed over 3 mm); 1 far from any cavity, where the normal is undefined."""
    dot, g2, dist2 = _beam_dot(blood, probe, voxel_mm, 3.0, 3.0)
    cos2 = dot * dot / (g2 * dist2 + np.float32(1e-12))
    weight = g2 / (g2 + np.float32(0.02 ** 2))     # ~1 within a few mm of a cavity
    return np.float32(1.0) - np.float32(anisotropy) * weight * (np.float32(1.0) - np.minimum(cos2, 1.0))


def trabeculae(labels: np.ndarray, amplitude: float, voxel_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Extra amplitude (Z, Y, X) float32 of thin muscle strands in the ventricles' blood: a smooth
    random field (0.8 mm) above one standard deviation, times ``amplitude``, fading over 2.5 mm
    from the endocardium."""
    ventricle = (labels == Tissue.BLOOD_LV) | (labels == Tissue.BLOOD_RV)
    field = rng.standard_normal(labels.shape, dtype=np.float32)
    field = ndimage.gaussian_filter(field, 0.8 / voxel_mm, truncate=2.5)
    field *= np.float32(1.0 / (field.std() + 1e-6))
    depth = ndimage.distance_transform_edt(ventricle).astype(np.float32) * np.float32(voxel_mm)
    out = np.where(ventricle & (field > 1.0), np.float32(amplitude) * np.exp(-depth / np.float32(2.5)),
                   np.float32(0.0))
    return out.astype(np.float32, copy=False)


def cavity_clutter(amp: np.ndarray, blood: np.ndarray, level: float, voxel_mm: float) -> np.ndarray:
    """Extra amplitude (Z, Y, X) float32 in the blood: ``level`` x the tissue amplitude blurred by a
    side-lobe kernel (3 mm across the beam, 1 mm along it, the volume's z), zero outside blood."""
    tissue = np.where(blood, np.float32(0.0), amp)
    haze = ndimage.gaussian_filter(tissue, (1.0 / voxel_mm, 3.0 / voxel_mm, 3.0 / voxel_mm), truncate=2.5)
    haze *= np.float32(level)
    haze[~blood] = 0.0
    return haze


def reference_echo(labels: np.ndarray, shape, style: AcquisitionStyle, depth_mm: np.ndarray,
                   rng: np.random.Generator, probe: np.ndarray | None = None,
                   speckle_box: tuple[slice, slice, slice] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """End-diastolic echo envelope and unit speckle.

    labels: (Z, Y, X) uint8 tissue labels; depth_mm: (Z, Y, X) or broadcastable float32 depth
    from the apical window (mm, for the near-field haze); probe: (3,) mm, the apical window in V
    (for specular interfaces; None: none); speckle_box: (k, j, i) slices where ``spk`` is
    needed (default: everywhere). Returns (env, spk) float32: env (Z, Y, X) in linear amplitude
    (1 = nominal myocardium), spk the unit-mean speckle of the same scatterers in the box.
    """
    amp = tissue_amplitudes(shape)[labels]
    # slow tissue heterogeneity (not in blood), stronger in lung
    tex = rng.standard_normal(labels.shape, dtype=np.float32)
    tex = ndimage.gaussian_filter(tex, 3.0 / style.voxel_mm, truncate=2.5)
    tex *= np.float32(1.0 / (tex.std() + 1e-6))
    blood = labels >= Tissue.BLOOD_LV
    lung = labels == Tissue.LUNG
    mod = np.exp(np.float32(0.18) * tex)
    mod[lung] = np.exp(np.float32(0.7) * tex[lung])
    mod[blood] = 1.0
    amp *= mod
    del tex, mod
    # myocardial backscatter depends on the beam's angle to the wall (fibre anisotropy): walls
    # along the beam fade (lateral-wall dropout)
    if probe is not None and style.wall_anisotropy > 0:
        wall = (labels == Tissue.MYOCARDIUM) | (labels == Tissue.ATRIAL_WALL)
        amp[wall] *= wall_angle_factor(blood, probe, style.voxel_mm, style.wall_anisotropy)[wall]
    # specular tissue/blood interfaces: bright where the wall faces the apical window's beam,
    # weak where the wall runs along it (lateral-wall dropout of real apical acquisitions)
    if probe is not None and style.specular_gain > 0:
        amp += specular_boost(blood, probe, style.voxel_mm, style.specular_gain)
    # stationary near-field clutter under the probe
    if style.near_field_haze > 0:
        amp += np.float32(style.near_field_haze) * np.exp(-np.asarray(depth_mm, np.float32) / np.float32(12.0))
    sig = _psf_sigmas(style)
    norm = np.float32(1.0 / _blurred_noise_norm(sig))
    re = rng.standard_normal(labels.shape, dtype=np.float32)
    im = rng.standard_normal(labels.shape, dtype=np.float32)
    # drawn after the scatterers, so the styles without them keep their bytes
    if style.trabeculation > 0:
        amp += trabeculae(labels, shape.echo_myocardium * style.trabeculation, style.voxel_mm, rng)
    if style.cavity_clutter > 0:
        amp += cavity_clutter(amp, blood, style.cavity_clutter, style.voxel_mm)
    box = tuple(slice(0, n) for n in labels.shape) if speckle_box is None else speckle_box
    spk = np.hypot(ndimage.gaussian_filter(re[box], sig, truncate=2.5),
                   ndimage.gaussian_filter(im[box], sig, truncate=2.5)) * norm
    re *= amp
    im *= amp
    env = np.hypot(ndimage.gaussian_filter(re, sig, truncate=2.5),
                   ndimage.gaussian_filter(im, sig, truncate=2.5)) * norm
    return env.astype(np.float32, copy=False), spk.astype(np.float32, copy=False)


@numba.njit(cache=True, inline='always')
def _trilinear(a, z, y, x):
    nz, ny, nx = a.shape
    if z < 0.0 or y < 0.0 or x < 0.0 or z > nz - 1 or y > ny - 1 or x > nx - 1:
        return 0.0
    k0, j0, i0 = min(int(z), nz - 2), min(int(y), ny - 2), min(int(x), nx - 2)
    fz, fy, fx = z - k0, y - j0, x - i0
    c00 = a[k0, j0, i0] * (1 - fx) + a[k0, j0, i0 + 1] * fx
    c01 = a[k0, j0 + 1, i0] * (1 - fx) + a[k0, j0 + 1, i0 + 1] * fx
    c10 = a[k0 + 1, j0, i0] * (1 - fx) + a[k0 + 1, j0, i0 + 1] * fx
    c11 = a[k0 + 1, j0 + 1, i0] * (1 - fx) + a[k0 + 1, j0 + 1, i0 + 1] * fx
    return (c00 * (1 - fy) + c01 * fy) * (1 - fz) + (c10 * (1 - fy) + c11 * fy) * fz


@numba.njit(cache=True, inline='always')
def _leaflet_distance(X0, X1, X2, vrow):
    """Distance (mm, minus half thickness) from a material point to a valve's leaflets."""
    cx, cy, cz = vrow[V_CO], vrow[V_CO + 1], vrow[V_CO + 2]
    ax, ay, az = vrow[V_AX], vrow[V_AX + 1], vrow[V_AX + 2]
    rx, ry, rz = X0 - cx, X1 - cy, X2 - cz
    h = rx * ax + ry * ay + rz * az
    px, py, pz = rx - h * ax, ry - h * ay, rz - h * az
    rho = math.sqrt(px * px + py * py + pz * pz)
    if rho < 1e-6:     # on the valve axis: any in-plane direction (all give the tip)
        px, py, pz = ay, -ax, 0.0
        if abs(ax) + abs(ay) < 1e-6:
            px, py, pz = 1.0, 0.0, 0.0
        n = math.sqrt(px * px + py * py + pz * pz)
        dx, dy, dz = px / n, py / n, pz / n
        rho = 0.0
    else:
        dx, dy, dz = px / rho, py / rho, pz / rho
    ox, oy, oz = cx - vrow[V_C], cy - vrow[V_C + 1], cz - vrow[V_C + 2]
    b = ox * dx + oy * dy + oz * dz
    disc = b * b - (ox * ox + oy * oy + oz * oz) + vrow[V_R] ** 2
    sh = -b + math.sqrt(max(disc, 0.0))          # hinge: coaptation point -> annulus along dir
    length = sh * vrow[V_LF]
    beta = vrow[V_BETA]
    ex, ey = -length * math.cos(beta), length * math.sin(beta)   # hinge -> tip in (rho, h)
    qx, qy = rho - sh, h
    tt = min(max((qx * ex + qy * ey) / (ex * ex + ey * ey + 1e-12), 0.0), 1.0)
    ddx, ddy = qx - tt * ex, qy - tt * ey
    return math.sqrt(ddx * ddx + ddy * ddy) - 0.5 * vrow[V_TH]


@numba.njit(cache=True, fastmath=True)
def render_frame(out, lab_out, env, spk, spk_off, ref_lab, spacing, centre, q, mp, valves, probe, att_lut,
                 noise, noise_offset, disp):
    """Render one frame into ``out`` (Z, Y, X) uint8 (and ``lab_out`` labels when it is 3D).

    env: (Z, Y, X) float32 reference envelope; spk: unit speckle of a sub-box starting at voxel
    ``spk_off`` (k, j, i), covering the leaflets' material points; ref_lab: (Z, Y, X) uint8
    end-diastolic labels; spacing (3,) mm (x, y, z); centre (3,) LV centre in V; q (3, 3)
    columns of H in V; mp motion parameters; valves (n, N_VALVE); probe (3,) apical window in V;
    att_lut: amplitude factor per 0.5 mm of depth from the window (residual attenuation);
    noise: (M, 2) float32 standard normal pairs, M a power of two, read from ``noise_offset``
    on (a fresh stretch per frame); disp = (gain - headroom dB, dynamic range dB, noise
    amplitude, gamma, PSF sigma mm).
    """
    nz, ny, nx = out.shape
    sx, sy, sz = spacing[0], spacing[1], spacing[2]
    gain, dr, namp, gam, psf = disp[0], disp[1], disp[2], disp[3], disp[4]
    labels = lab_out.ndim == 3 and lab_out.shape[0] == nz
    nv = valves.shape[0]
    inv2s2 = 1.0 / (2.0 * psf * psf)
    mask = noise.shape[0] - 1
    nlut = att_lut.shape[0] - 1
    idx = noise_offset
    scale = 20.0 / dr
    # log compression: val = 1 + (10 log10(amp^2) + gain) / dr, log2 by exponent + table
    l2scale = 0.5 * scale * math.log10(2.0)
    offset = 1.0 + gain / dr
    log2_lut = np.empty(LUT_N + 1)
    for n in range(LUT_N + 1):
        log2_lut[n] = math.log2(0.5 + (n + 0.5) / (2.0 * LUT_N))
    wlo, whi = 1e30, -1e30
    bound2 = np.empty(nv)
    for n in range(nv):
        bound2[n] = valves[n, V_BOUND] ** 2
        wlo = min(wlo, valves[n, V_C + 2] - valves[n, V_BOUND])
        whi = max(whi, valves[n, V_C + 2] + valves[n, V_BOUND])
    for k in range(nz):
        z = k * sz - centre[2]
        for j in range(ny):
            y = j * sy - centre[1]
            for i in range(nx):
                x = i * sx - centre[0]
                # current point in H
                u = q[0, 0] * x + q[1, 0] * y + q[2, 0] * z
                v = q[0, 1] * x + q[1, 1] * y + q[2, 1] * z
                w = q[0, 2] * x + q[1, 2] * y + q[2, 2] * z
                U, V, W = backward_point(u, v, w, mp)
                if U == u and V == v and W == w:      # tissue at rest here: no interpolation
                    xv, yv, zv = float(i), float(j), float(k)
                    a = env[k, j, i]
                else:
                    # material point back in V (index units)
                    xv = (centre[0] + q[0, 0] * U + q[0, 1] * V + q[0, 2] * W) / sx
                    yv = (centre[1] + q[1, 0] * U + q[1, 1] * V + q[1, 2] * W) / sy
                    zv = (centre[2] + q[2, 0] * U + q[2, 1] * V + q[2, 2] * W) / sz
                    a = _trilinear(env, zv, yv, xv)
                on_valve = False
                for n in range(nv if wlo <= W <= whi else 0):
                    dxv, dyv, dzv = U - valves[n, V_C], V - valves[n, V_C + 1], W - valves[n, V_C + 2]
                    if dxv * dxv + dyv * dyv + dzv * dzv > bound2[n]:
                        continue
                    d = _leaflet_distance(U, V, W, valves[n])
                    if d < 3.0 * psf:
                        wgt = 1.0 if d <= 0.0 else math.exp(-d * d * inv2s2)
                        a += valves[n, V_AMP] * wgt * _trilinear(spk, zv - spk_off[0], yv - spk_off[1], xv - spk_off[2])
                        if d <= 0.0:
                            on_valve = True
                # residual attenuation with depth from the apical window
                px, py, pz = i * sx - probe[0], j * sy - probe[1], k * sz - probe[2]
                li = int(2.0 * math.sqrt(px * px + py * py + pz * pz))
                a *= att_lut[min(li, nlut)]
                idx = (idx + 1) & mask
                n1 = noise[idx, 0] * namp
                n2 = noise[idx, 1] * namp
                amp2 = (a + n1) ** 2 + n2 * n2 + 1e-18
                m, e = math.frexp(amp2)                      # amp2 = m 2^e, m in [0.5, 1)
                val = offset + l2scale * (e + log2_lut[int((m - 0.5) * 2.0 * LUT_N)])
                if val <= 0.0:
                    out[k, j, i] = 0
                else:
                    if val > 1.0:
                        val = 1.0
                    if gam != 1.0:
                        val = val ** gam
                    out[k, j, i] = np.uint8(val * 255.0 + 0.5)
                if labels:
                    if on_valve:
                        lab_out[k, j, i] = _VALVE_LABEL
                    else:
                        ki, ji, ii = int(zv + 0.5), int(yv + 0.5), int(xv + 0.5)
                        if 0 <= ki < nz and 0 <= ji < ny and 0 <= ii < nx:
                            lab_out[k, j, i] = ref_lab[ki, ji, ii]
                        else:
                            lab_out[k, j, i] = 0
