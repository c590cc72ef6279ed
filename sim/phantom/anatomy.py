"""Heart anatomy of one phantom patient: dimensions, placement and the tissue label field.

Heart frame H (mm): origin at the LV centre (midpoint of the LV cavity long axis, between the
endocardial apex and the mitral annulus plane), ``w`` = LV long axis from apex to base,
``u`` = towards the right ventricle (short-axis azimuth psi = 0), ``v = w x u`` (psi = 90 deg).
Short-axis azimuths psi (about +w, from u towards v) of the LV walls:
0 inferoseptal, 60 anteroseptal (LVOT, aorta), 120 anterior, 180 anterolateral,
240 inferolateral, 300 inferior; this has the handedness of a real heart.

Volume frame V (mm): ``x_V = centre + Q @ x_H`` with ``Q`` = columns (u, v, w) in V. For zero
tilt and spin ``Q = Rz(pi)``: long axis along +z, RV towards -x (the image left of the base
probe, as in the ASE apical four-chamber display).

Dimensions: adult normal values of Lang et al. 2015 (ASE/EACVI chamber quantification) and
Rudski et al. 2010 (right heart); see ``docs/phantom.md``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import IntEnum

import numba
import numpy as np
from scipy.spatial.transform import Rotation

from .errors import PhantomError

__all__ = ['Anatomy', 'HeartShape', 'Tissue', 'sample_heart_shape']


class Tissue(IntEnum):
    """Tissue classes of the label field (uint8 values)."""

    TISSUE = 0       # mediastinal / soft tissue
    LUNG = 1
    PLEURA = 2
    SKIN = 3
    SUBCUT = 4       # subcutaneous fat
    MUSCLE = 5       # chest wall muscle
    FAT = 6          # epicardial fat, atrioventricular groove
    PERICARDIUM = 7
    MYOCARDIUM = 8
    ATRIAL_WALL = 9
    AORTIC_WALL = 10
    ANNULUS = 11     # fibrous valve rings
    BLOOD_LV = 12
    BLOOD_RV = 13
    BLOOD_LA = 14
    BLOOD_RA = 15
    BLOOD_AO = 16
    VALVE = 17       # leaflets (drawn per frame)


BLOOD = (Tissue.BLOOD_LV, Tissue.BLOOD_RV, Tissue.BLOOD_LA, Tissue.BLOOD_RA, Tissue.BLOOD_AO)


@dataclass(frozen=True)
class HeartShape:
    """Per-patient parameters (mm, degrees, bpm, fractions); drawn by :func:`sample_heart_shape`."""

    lv_length: float = 84.0          # LV cavity, endocardial apex to mitral annulus plane
    lv_diameter: float = 47.0        # LV end-diastolic diameter
    lv_ellipticity: float = 1.0      # short-axis aspect (u radius / v radius)
    wall: float = 9.0                # LV wall thickness (septum, lateral wall)
    rv_diameter: float = 31.0        # RV basal diameter
    rv_length: float = 70.0          # tricuspid annulus to RV apex
    la_diameter: float = 37.0        # LA transverse diameter
    la_length: float = 50.0          # LA long-axis length
    ra_diameter: float = 38.0
    ra_length: float = 46.0
    aortic_root: float = 31.0        # sinus of Valsalva diameter
    mitral_annulus: float = 31.0
    tricuspid_annulus: float = 30.0
    chest_wall: float = 22.0         # skin to epicardial apex along the window axis
    lung_gap: float = 16.0           # soft tissue between pericardium and lung
    tilt_deg: float = 0.0            # long axis vs volume z
    tilt_azimuth_deg: float = 0.0
    spin_deg: float = 0.0            # turn about the long axis (0: A4C plane = volume x-z)
    heart_rate_bpm: float = 70.0
    ejection_fraction: float = 0.6
    long_shortening: float = 0.15    # base-apex shortening fraction at end-systole
    twist_deg: float = 10.0          # base-to-apex twist at end-systole
    echo_myocardium: float = 1.0     # amplitude multipliers (echogenicity)
    echo_blood: float = 0.05
    echo_pericardium: float = 8.0
    echo_tissue: float = 0.55

    def as_dict(self) -> dict:
        return {k: float(v) for k, v in asdict(self).items()}


def sample_heart_shape(rng: np.random.Generator) -> HeartShape:
    """Draw one adult heart (normal ranges, Lang 2015 / Rudski 2010) and its placement."""
    def n(mean, sd, lo, hi):
        return float(np.clip(rng.normal(mean, sd), lo, hi))

    return HeartShape(
        lv_length=n(84, 5, 74, 94), lv_diameter=n(47, 3.5, 40, 55),
        lv_ellipticity=n(1.0, 0.04, 0.92, 1.08), wall=n(8.8, 0.9, 7.0, 11.0),
        rv_diameter=n(31, 3, 25, 38), rv_length=n(70, 5, 60, 80),
        la_diameter=n(36, 3, 30, 41), la_length=n(50, 4, 42, 58),
        ra_diameter=n(38, 3, 32, 44), ra_length=n(46, 4, 38, 53),
        aortic_root=n(31, 2.5, 26, 36), mitral_annulus=n(31, 2, 27, 35),
        tricuspid_annulus=n(30, 2.5, 25, 35),
        chest_wall=float(rng.uniform(17, 27)), lung_gap=float(rng.uniform(10, 22)),
        tilt_deg=float(min(abs(rng.normal(0, 9)), 20.0)),
        tilt_azimuth_deg=float(rng.uniform(0, 360)),
        spin_deg=float(rng.uniform(-25, 25)),
        heart_rate_bpm=float(rng.uniform(55, 95)),
        ejection_fraction=float(rng.uniform(0.55, 0.68)),
        long_shortening=float(rng.uniform(0.12, 0.17)),
        twist_deg=float(rng.uniform(8.5, 11.5)),
        echo_myocardium=float(np.exp(rng.normal(0, 0.15))),
        echo_blood=float(rng.uniform(0.03, 0.07)),
        echo_pericardium=float(rng.uniform(6.0, 10.0)),
        echo_tissue=float(rng.uniform(0.4, 0.7)),
    )


def _e(psi_deg: float) -> np.ndarray:
    """Unit vector in H at short-axis azimuth psi (degrees, about +w from u towards v)."""
    a = math.radians(psi_deg)
    return np.array([math.cos(a), math.sin(a), 0.0])


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _frame_along(d: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """(3, 3) rows: a1, a2, d (a right-handed frame with third axis d, a1 near ``hint``)."""
    d = _unit(d)
    a1 = _unit(hint - np.dot(hint, d) * d)
    return np.stack([a1, np.cross(d, a1), d])


def _ellipsoid_sdf(p: np.ndarray, centre, axes, radii) -> np.ndarray:
    """Approximate signed distance (mm) of points p (3, N) to an ellipsoid; axes rows unit.

    Uses ``k0 (k0 - 1) / k1`` with ``k0 = |q / r|``, ``k1 = |q / r^2|`` (exact on the surface).
    """
    return _ellipsoid_kernel(np.ascontiguousarray(p, np.float32), np.asarray(centre, np.float64),
                             np.asarray(axes, np.float64), np.asarray(radii, np.float64))


@numba.njit(cache=True)
def _ellipsoid_kernel(p, centre, axes, radii):
    n = p.shape[1]
    out = np.empty(n, np.float32)
    for m in range(n):
        dx, dy, dz = p[0, m] - centre[0], p[1, m] - centre[1], p[2, m] - centre[2]
        k0 = 0.0
        k1 = 0.0
        for a in range(3):
            q = axes[a, 0] * dx + axes[a, 1] * dy + axes[a, 2] * dz
            t = q / radii[a]
            k0 += t * t
            t = t / radii[a]
            k1 += t * t
        k0 = np.sqrt(k0)
        out[m] = k0 * (k0 - 1.0) / (np.sqrt(k1) + 1e-6)
    return out


def _capsule_sdf(p: np.ndarray, a, b, radius: float) -> np.ndarray:
    a = np.asarray(a, np.float32)[:, None]
    ba = np.asarray(b, np.float32)[:, None] - a
    pa = p - a
    h = np.clip(np.sum(pa * ba, axis=0) / np.sum(ba * ba), 0, 1)
    return np.sqrt(np.sum((pa - ba * h) ** 2, axis=0)) - np.float32(radius)


def _torus_sdf(p: np.ndarray, centre, normal, ring: float, tube: float) -> np.ndarray:
    q = p - np.asarray(centre, np.float32)[:, None]
    n = np.asarray(normal, np.float32)[:, None]
    h = np.sum(q * n, axis=0)
    rho = np.sqrt(np.maximum(np.sum(q * q, axis=0) - h * h, 0))
    return np.sqrt((rho - ring) ** 2 + h * h) - np.float32(tube)


@dataclass(frozen=True)
class Valve:
    """A valve in H: annulus centre, downstream axis (flow direction when open), annulus radius,
    coaptation point offset in the annulus plane, leaflet thickness, closed / open tilt (rad)."""

    centre: np.ndarray
    axis: np.ndarray
    radius: float
    coapt: np.ndarray
    thickness: float
    beta_closed: float
    beta_open: float


class Anatomy:
    """One patient's heart placed in the volume frame; evaluates the end-diastolic label field.

    centre: (3,) mm, LV centre in V; q: (3, 3) columns (u, v, w) of H in V; probe_apex: (3,) mm,
    the apical window (base pose sector apex) in V.
    """

    def __init__(self, shape: HeartShape, centre: np.ndarray, radius: float) -> None:
        self.shape = s = shape
        self.centre = np.asarray(centre, np.float64)
        self.radius = float(radius)
        tilt = Rotation.from_rotvec(math.radians(s.tilt_deg) * np.array(
            [math.cos(math.radians(s.tilt_azimuth_deg)), math.sin(math.radians(s.tilt_azimuth_deg)), 0.0]))
        spin = Rotation.from_rotvec([0, 0, math.pi + math.radians(s.spin_deg)])
        self.q = (tilt * spin).as_matrix()
        self.probe_apex = self.centre - self.radius * np.array([0.0, 0.0, 1.0])

        # --- LV: ellipsoid cut at the mitral plane (kappa: where the cut sits past the equator)
        kappa = 0.55
        self.lv_a = s.lv_length / (1 + kappa)
        self.w_apex_endo = -s.lv_length / 2
        self.w_mv = s.lv_length / 2
        self.w_e = self.w_apex_endo + self.lv_a
        r = s.lv_diameter / 2
        self.lv_radii = np.array([r * math.sqrt(s.lv_ellipticity), r / math.sqrt(s.lv_ellipticity), self.lv_a])
        self.lv_r = r
        self.apex_wall = 0.8 * s.wall
        self.lv_epi_radii = self.lv_radii + np.array([s.wall, s.wall, self.apex_wall])
        self.w_apex_epi = self.w_apex_endo - self.apex_wall
        ez = np.array([0.0, 0.0, 1.0])
        self.apex = np.array([0.0, 0.0, self.w_apex_epi])

        # --- mitral valve: offset towards the inferoseptum, posterior to the aortic valve
        ra_m = s.mitral_annulus / 2
        mv_c = 5.0 * _e(315) + self.w_mv * ez
        self.mitral = Valve(mv_c, -ez, ra_m, 0.3 * ra_m * _e(235), 2.0, math.radians(12), math.radians(78))
        # --- aortic valve: anteroseptal, more basal, root tilted towards anterior
        ra_a = 0.36 * s.aortic_root
        av_c = 19.0 * _e(57) + (self.w_mv + 6.0) * ez
        self.ao_dir = _unit(ez + 0.55 * _e(72))
        self.aortic = Valve(av_c, self.ao_dir, ra_a, np.zeros(3), 1.2, math.radians(-12), math.radians(84))
        self.ao_len = 48.0
        self.lvot_a = 12.0 * _e(57) + (self.w_mv - 16.0) * ez
        # --- atria: interatrial septum in line with the crux, both atria posterior of the aorta
        n_ias = _e(15)
        back = 9.0 * _e(285)
        self.p_ias = 21.0 * n_ias + back
        self.n_ias = n_ias
        la_r, ra_r = s.la_diameter / 2, s.ra_diameter / 2
        self.w_tv = self.w_mv - 8.0
        self.la_c = self.p_ias - (la_r - 1.5) * n_ias + (self.w_mv + 0.72 * s.la_length / 2) * ez
        self.ra_c = self.p_ias + (ra_r - 1.5) * n_ias + (self.w_tv + 0.72 * s.ra_length / 2) * ez
        self.la_radii = np.array([la_r, la_r * 0.95, s.la_length / 2])
        self.ra_radii = np.array([ra_r, ra_r * 0.95, s.ra_length / 2])
        self.la_axes = _frame_along(ez, n_ias)
        # --- tricuspid valve under the RA, clear of the LV wall; apically displaced
        ra_t = s.tricuspid_annulus / 2
        epi_at_tv = self._lv_epi_radius(self.w_tv)
        tv_in = self.ra_c[:2] - 2.0 * n_ias[:2]
        dist = max(np.linalg.norm(tv_in), epi_at_tv + 1.0 + 0.55 * ra_t)
        tv_c = np.r_[dist * _unit(tv_in), self.w_tv]
        self.tricuspid = Valve(tv_c, -ez, ra_t, 0.15 * ra_t * _e(90), 1.6, math.radians(12), math.radians(75))
        # --- RV: ellipsoid crescent wrapped round the septum, apex short of the LV apex
        psi_rv = 15.0
        a_r = 0.95 * s.rv_diameter
        d_rv = r + s.wall + s.rv_diameter - a_r
        a_l = s.rv_length
        self.rv_c = d_rv * _e(psi_rv) + self.w_tv * ez
        self.rv_axes = _frame_along(ez, _e(psi_rv))[[0, 1, 2]]
        self.rv_radii = np.array([a_r, 1.15 * s.rv_diameter, a_l])
        self.rv_wall = 4.0
        # --- papillary muscles (anterolateral, posteromedial)
        self.papillary = [(0.62 * r * _e(psi) + (-4.0) * ez) for psi in (165.0, 285.0)]

    # ------------------------------------------------------------------ helpers
    def _lv_epi_radius(self, w: float) -> float:
        """Mean LV epicardial radius (mm) at long-axis height w (H)."""
        rr = self.lv_epi_radii
        x = (min(w, self.w_mv) - self.w_e) / rr[2]
        return float(0.5 * (rr[0] + rr[1]) * math.sqrt(max(0.0, 1 - x * x)))

    def lv_cavity_radius(self, w: float) -> float:
        """Mean LV endocardial radius (mm) at height w (H), end-diastole."""
        x = (min(w, self.w_mv) - self.w_e) / self.lv_a
        return float(self.lv_r * math.sqrt(max(0.0, 1 - x * x)))

    def heart_bounds(self, step: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) (3,) mm in V: bounding box of the heart and pericardium (labels >= FAT)."""
        g = np.arange(-110.0, 140.0, step, dtype=np.float32)
        uu, vv, ww = np.meshgrid(g, g, g, indexing='ij')
        pts_h = np.stack([uu.ravel(), vv.ravel(), ww.ravel()])
        pts_v = (self.centre[:, None] + self.q @ pts_h).astype(np.float32)
        lab = self.labels(pts_v)
        heart = (lab >= Tissue.FAT) & (lab != Tissue.VALVE)
        inside = pts_v[:, heart]
        return inside.min(axis=1), inside.max(axis=1)

    def to_volume(self, p_h: np.ndarray) -> np.ndarray:
        """Points (..., 3) from H to V (mm)."""
        return self.centre + np.asarray(p_h) @ self.q.T

    def to_heart(self, p_v: np.ndarray) -> np.ndarray:
        """Points (..., 3) from V to H (mm)."""
        return (np.asarray(p_v) - self.centre) @ self.q

    def key_points(self) -> dict[str, np.ndarray]:
        """Landmarks in H (mm): apex (epicardial), mitral / tricuspid / aortic valve centres, LA,
        RA, RV centres."""
        return {'apex': self.apex.copy(), 'mitral': self.mitral.centre.copy(),
                'tricuspid': self.tricuspid.centre.copy(), 'aortic': self.aortic.centre.copy(),
                'la': self.la_c.copy(), 'ra': self.ra_c.copy(), 'rv': self.rv_c.copy()}

    # ------------------------------------------------------------------ labels
    def labels(self, p_v: np.ndarray) -> np.ndarray:
        """Tissue labels (N,) uint8 at points p_v (3, N) float32 mm in V, end-diastole."""
        if p_v.ndim != 2 or p_v.shape[0] != 3:
            raise PhantomError(f'labels: points must be (3, N), got {p_v.shape}')
        s = self.shape
        p_v = p_v.astype(np.float32, copy=False)
        p = (self.q.T.astype(np.float32) @ (p_v - self.centre.astype(np.float32)[:, None]))
        w = p[2]
        eye = np.eye(3)
        f32 = np.float32

        lv_cav = _ellipsoid_sdf(p, [0, 0, self.w_e], eye, self.lv_radii)
        lv_epi = np.maximum(_ellipsoid_sdf(p, [0, 0, self.w_e], eye, self.lv_epi_radii), w - f32(self.w_mv + 3))
        rv_in = _ellipsoid_sdf(p, self.rv_c, self.rv_axes, self.rv_radii)
        rv_out = np.maximum(_ellipsoid_sdf(p, self.rv_c, self.rv_axes, self.rv_radii + self.rv_wall),
                            w - f32(self.w_tv + 3))
        la_in = _ellipsoid_sdf(p, self.la_c, self.la_axes, self.la_radii)
        ra_in = _ellipsoid_sdf(p, self.ra_c, self.la_axes, self.ra_radii)
        atrial_wall = 2.2
        la_out, ra_out = la_in - f32(atrial_wall), ra_in - f32(atrial_wall)
        av = self.aortic
        ao_axes = _frame_along(self.ao_dir, _e(57))
        ao_h = np.sum((p - av.centre.astype(np.float32)[:, None]) * self.ao_dir.astype(np.float32)[:, None], axis=0)
        r_sin = s.aortic_root / 2
        ao_lumen = np.minimum(
            _capsule_sdf(p, av.centre, av.centre + self.ao_len * self.ao_dir, 0.86 * r_sin),
            _ellipsoid_sdf(p, av.centre + 9.0 * self.ao_dir, ao_axes, [r_sin, r_sin, 12.0]))
        ao_lumen = np.maximum(ao_lumen, -ao_h - f32(1.0))
        ao_out = np.maximum(ao_lumen - f32(2.5), -ao_h - f32(3.0))
        lvot = _capsule_sdf(p, self.lvot_a, av.centre, 10.0)

        env = np.minimum.reduce([lv_epi, rv_out, la_out, ra_out, ao_out])
        lab = np.full(p.shape[1], Tissue.TISSUE, np.uint8)
        # background: lung beyond a soft-tissue gap, chest wall under the probe
        depth = p_v[2] - f32(self.probe_apex[2])
        below_chest = depth > f32(s.chest_wall - 6.0)
        lab[(env > f32(s.lung_gap)) & below_chest] = Tissue.LUNG
        lab[(np.abs(env - f32(s.lung_gap)) < 1.2) & below_chest] = Tissue.PLEURA
        lab[depth < s.chest_wall - 6.0] = Tissue.MUSCLE
        lab[depth < 9.0] = Tissue.SUBCUT
        lab[depth < 2.5] = Tissue.SKIN
        lab[(env > 0) & (env <= 0.8)] = Tissue.FAT
        lab[(env > 0.8) & (env <= 2.8)] = Tissue.PERICARDIUM
        # walls
        lab[(la_out <= 0) | (ra_out <= 0)] = Tissue.ATRIAL_WALL
        lab[(lv_epi <= 0) | (rv_out <= 0)] = Tissue.MYOCARDIUM
        lab[ao_out <= 0] = Tissue.AORTIC_WALL
        # cavities
        outside_lv = lv_epi > 0
        outside_ao = (ao_out > 0) & (lvot > 2.5)
        ias = np.sum((p - self.p_ias.astype(np.float32)[:, None])[:2] * self.n_ias[:2, None].astype(np.float32), axis=0)
        lab[(rv_in <= 0) & outside_lv & outside_ao & (w < f32(self.w_tv))] = Tissue.BLOOD_RV
        lab[(la_in <= 0) & (w >= f32(self.w_mv)) & (ias < -2.0) & outside_ao] = Tissue.BLOOD_LA
        lab[(ra_in <= 0) & (w >= f32(self.w_tv)) & (ias > 2.0) & outside_ao & outside_lv] = Tissue.BLOOD_RA
        for valve, tag, depth_lo, depth_hi in ((self.mitral, Tissue.BLOOD_LV, -3.0, 4.0),
                                               (self.tricuspid, Tissue.BLOOD_RV, -3.0, 4.0)):
            q = p - valve.centre.astype(np.float32)[:, None]
            h = -np.sum(q * valve.axis.astype(np.float32)[:, None], axis=0)  # towards the atrium
            rho2 = np.sum(q * q, axis=0) - h * h
            hole = (rho2 < valve.radius ** 2) & (h > depth_lo) & (h < depth_hi)
            if tag == Tissue.BLOOD_RV:
                hole &= outside_lv
            lab[hole] = tag
        lab[(lv_cav <= 0) & (w < f32(self.w_mv))] = Tissue.BLOOD_LV
        lab[lvot <= 0] = Tissue.BLOOD_LV
        lab[ao_lumen <= 0] = Tissue.BLOOD_AO
        # papillary muscles, annulus rings
        for c in self.papillary:
            lab[_ellipsoid_sdf(p, c, eye, [5.0, 5.0, 11.0]) <= 0] = Tissue.MYOCARDIUM
        for valve in (self.mitral, self.tricuspid, self.aortic):
            lab[_torus_sdf(p, valve.centre, valve.axis, valve.radius + 1.0, 1.8) <= 0] = Tissue.ANNULUS
        return lab
