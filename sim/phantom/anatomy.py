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
from dataclasses import asdict, dataclass, replace
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

    shape = HeartShape(
        lv_length=n(84, 5, 74, 94), lv_diameter=n(47, 3.5, 40, 55),
        lv_ellipticity=n(1.0, 0.04, 0.92, 1.08), wall=n(8.8, 0.9, 7.0, 11.0),
        rv_diameter=n(31, 3, 25, 38), rv_length=n(70, 5, 60, 80),
        la_diameter=n(36, 3, 30, 41), la_length=n(50, 4, 42, 58),
        ra_diameter=n(38, 3, 32, 44), ra_length=n(46, 4, 38, 53),
        aortic_root=n(31, 2.5, 26, 36), mitral_annulus=n(31, 2, 27, 35),
        tricuspid_annulus=n(30, 2.5, 25, 35),
        chest_wall=float(rng.uniform(70, 80)),   # the orbit radius r for now, see below
        lung_gap=float(rng.uniform(10, 22)),
        tilt_deg=float(min(abs(rng.normal(0, 9)), 20.0)),
        tilt_azimuth_deg=float(rng.uniform(0, 360)),
        spin_deg=float(rng.uniform(-25, 25)),
        heart_rate_bpm=float(rng.uniform(55, 95)),
        ejection_fraction=float(rng.uniform(0.55, 0.66)),
        long_shortening=float(rng.uniform(0.12, 0.17)),
        twist_deg=float(rng.uniform(8.5, 11.5)),
        echo_myocardium=float(np.exp(rng.normal(0, 0.15))),
        echo_blood=float(rng.uniform(0.03, 0.07)),
        echo_pericardium=float(rng.uniform(6.0, 10.0)),
        echo_tissue=float(rng.uniform(0.4, 0.7)),
    )
    # r = LV length / 2 + apical wall (0.8 wall) + chest wall, r uniform in [70, 80] mm:
    # the chest wall (skin to epicardial apex) takes what is left, 14-37 mm
    radius = shape.chest_wall
    return replace(shape, chest_wall=radius - shape.lv_length / 2 - 0.8 * shape.wall)


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
        # --- left atrial appendage: a pouch from the LA over the anterolateral LV base
        self.laa_a = 17.0 * _e(160) + (self.w_mv + 12.0) * ez
        self.laa_b = (r + s.wall + 6.0) * _e(128) + (self.w_mv - 3.0) * ez
        self.laa_r = 4.0
        # --- moderator band: septum to RV free wall in the apical third of the RV
        w_mb = self.w_apex_endo + 0.3 * s.lv_length
        half = a_r * math.sqrt(max(0.0, 1.0 - ((w_mb - self.w_tv) / a_l) ** 2))
        psi_mb = math.degrees(math.atan2(self.tricuspid.centre[1], self.tricuspid.centre[0]))  # ~A4C plane
        self.mb_a = (self._lv_epi_radius(w_mb) - 1.0) * _e(psi_mb) + w_mb * ez
        self.mb_b = (d_rv + half + 1.5) * _e(psi_mb) + (w_mb + 8.0) * ez
        self.mb_r = 2.2

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
        """Tissue labels (N,) uint8 at points p_v (3, N) float32 mm in V, end-diastole (numba)."""
        if p_v.ndim != 2 or p_v.shape[0] != 3:
            raise PhantomError(f'labels: points must be (3, N), got {p_v.shape}')
        s = self.shape
        av = self.aortic
        scal = np.array([self.w_e, self.w_mv, self.w_tv, 2.2, self.ao_len, s.aortic_root / 2, s.lung_gap,
                         s.chest_wall, self.probe_apex[2]])
        valves = np.array([np.r_[v.centre, v.axis, v.radius] for v in (self.mitral, self.tricuspid, self.aortic)])
        out = np.empty(p_v.shape[1], np.uint8)
        _labels_kernel(np.ascontiguousarray(p_v, np.float32), self.centre, np.ascontiguousarray(self.q), out, scal,
                       self.lv_radii, self.lv_epi_radii, self.rv_c, np.ascontiguousarray(self.rv_axes),
                       self.rv_radii, self.rv_radii + self.rv_wall, self.la_c, self.ra_c,
                       np.ascontiguousarray(self.la_axes), self.la_radii, self.ra_radii, av.centre, self.ao_dir,
                       np.ascontiguousarray(_frame_along(self.ao_dir, _e(57))), self.lvot_a, valves,
                       np.array(self.papillary), self.p_ias, self.n_ias,
                       np.array([self.laa_a, self.laa_b]), self.laa_r, np.array([self.mb_a, self.mb_b]), self.mb_r)
        return out

    def labels_reference(self, p_v: np.ndarray) -> np.ndarray:
        """Same as :meth:`labels`, written with numpy arrays (the test oracle; slower)."""
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
        atrial_wall = 2.2   # (also in labels)
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
        laa = _capsule_sdf(p, self.laa_a, self.laa_b, self.laa_r)
        laa_out = laa - f32(atrial_wall)

        env = np.minimum.reduce([lv_epi, rv_out, la_out, ra_out, ao_out, laa_out])
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
        lab[(la_out <= 0) | (ra_out <= 0) | (laa_out <= 0)] = Tissue.ATRIAL_WALL
        lab[(lv_epi <= 0) | (rv_out <= 0)] = Tissue.MYOCARDIUM
        lab[ao_out <= 0] = Tissue.AORTIC_WALL
        # cavities
        outside_lv = lv_epi > 0
        outside_ao = (ao_out > 0) & (lvot > 2.5)
        ias = np.sum((p - self.p_ias.astype(np.float32)[:, None])[:2] * self.n_ias[:2, None].astype(np.float32), axis=0)
        lab[(rv_in <= 0) & outside_lv & outside_ao & (w < f32(self.w_tv))] = Tissue.BLOOD_RV
        lab[(la_in <= 0) & (w >= f32(self.w_mv)) & (ias < -2.0) & outside_ao] = Tissue.BLOOD_LA
        lab[(ra_in <= 0) & (w >= f32(self.w_tv)) & (ias > 2.0) & outside_ao & outside_lv] = Tissue.BLOOD_RA
        lab[(laa <= 0) & outside_lv & outside_ao] = Tissue.BLOOD_LA
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
        lab[(_capsule_sdf(p, self.mb_a, self.mb_b, self.mb_r) <= 0) & (lab == Tissue.BLOOD_RV)] = Tissue.MYOCARDIUM
        for valve in (self.mitral, self.tricuspid, self.aortic):
            lab[_torus_sdf(p, valve.centre, valve.axis, valve.radius + 1.0, 1.8) <= 0] = Tissue.ANNULUS
        return lab


# ---------------------------------------------------------------- labels, one point at a time
@numba.njit(cache=True, inline='always')
def _ell1(x, y, z, c, ax, r):
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    k0 = 0.0
    k1 = 0.0
    for a in range(3):
        t = (ax[a, 0] * dx + ax[a, 1] * dy + ax[a, 2] * dz) / r[a]
        k0 += t * t
        t = t / r[a]
        k1 += t * t
    k0 = math.sqrt(k0)
    return k0 * (k0 - 1.0) / (math.sqrt(k1) + 1e-6)


@numba.njit(cache=True, inline='always')
def _caps1(x, y, z, a, b, radius):
    bx, by, bz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    px, py, pz = x - a[0], y - a[1], z - a[2]
    h = min(max((px * bx + py * by + pz * bz) / (bx * bx + by * by + bz * bz), 0.0), 1.0)
    dx, dy, dz = px - h * bx, py - h * by, pz - h * bz
    return math.sqrt(dx * dx + dy * dy + dz * dz) - radius


@numba.njit(cache=True)
def _labels_kernel(pv, centre, q, out, scal, lv_r, lv_epi_r, rv_c, rv_ax, rv_r, rv_out_r, la_c, ra_c, la_ax,
                   la_r, ra_r, av_c, ao_d, ao_ax, lvot_a, valves, pap, p_ias, n_ias, laa_ab, laa_r, mb_ab, mb_r):
    w_e, w_mv, w_tv, aw, ao_len, r_sin, lung_gap, chest, probe_z = (scal[0], scal[1], scal[2], scal[3], scal[4],
                                                                    scal[5], scal[6], scal[7], scal[8])
    eye = np.eye(3)
    lv_c = np.array([0.0, 0.0, w_e])
    ao_end = av_c + ao_len * ao_d
    sinus_c = av_c + 9.0 * ao_d
    sinus_r = np.array([r_sin, r_sin, 12.0])
    pap_r = np.array([5.0, 5.0, 11.0])
    for m in range(pv.shape[1]):
        dxv, dyv, dzv = pv[0, m] - centre[0], pv[1, m] - centre[1], pv[2, m] - centre[2]
        x = q[0, 0] * dxv + q[1, 0] * dyv + q[2, 0] * dzv
        y = q[0, 1] * dxv + q[1, 1] * dyv + q[2, 1] * dzv
        w = q[0, 2] * dxv + q[1, 2] * dyv + q[2, 2] * dzv
        lv_epi = max(_ell1(x, y, w, lv_c, eye, lv_epi_r), w - (w_mv + 3.0))
        rv_out = max(_ell1(x, y, w, rv_c, rv_ax, rv_out_r), w - (w_tv + 3.0))
        la_in = _ell1(x, y, w, la_c, la_ax, la_r)
        ra_in = _ell1(x, y, w, ra_c, la_ax, ra_r)
        la_out, ra_out = la_in - aw, ra_in - aw
        ao_h = (x - av_c[0]) * ao_d[0] + (y - av_c[1]) * ao_d[1] + (w - av_c[2]) * ao_d[2]
        ao_lumen = min(_caps1(x, y, w, av_c, ao_end, 0.86 * r_sin), _ell1(x, y, w, sinus_c, ao_ax, sinus_r))
        ao_lumen = max(ao_lumen, -ao_h - 1.0)
        ao_out = max(ao_lumen - 2.5, -ao_h - 3.0)
        laa = _caps1(x, y, w, laa_ab[0], laa_ab[1], laa_r)
        laa_out = laa - aw
        env = min(min(min(lv_epi, rv_out), min(min(la_out, ra_out), ao_out)), laa_out)
        depth = pv[2, m] - probe_z
        lab = 0  # TISSUE
        below_chest = depth > chest - 6.0
        if below_chest and env > lung_gap:
            lab = 1
        if below_chest and abs(env - lung_gap) < 1.2:
            lab = 2
        if depth < chest - 6.0:
            lab = 5
        if depth < 9.0:
            lab = 4
        if depth < 2.5:
            lab = 3
        if env > 0.0 and env <= 0.8:
            lab = 6
        if env > 0.8 and env <= 2.8:
            lab = 7
        if la_out <= 0.0 or ra_out <= 0.0 or laa_out <= 0.0:
            lab = 9
        if lv_epi <= 0.0 or rv_out <= 0.0:
            lab = 8
        if ao_out <= 0.0:
            lab = 10
        if env <= 6.0:     # every cavity, hole and ring lies inside this (the reference checks)
            lvot = _caps1(x, y, w, lvot_a, av_c, 10.0)
            outside_lv = lv_epi > 0.0
            outside_ao = ao_out > 0.0 and lvot > 2.5
            ias = (x - p_ias[0]) * n_ias[0] + (y - p_ias[1]) * n_ias[1]
            if outside_lv and outside_ao and w < w_tv and _ell1(x, y, w, rv_c, rv_ax, rv_r) <= 0.0:
                lab = 13
            if la_in <= 0.0 and w >= w_mv and ias < -2.0 and outside_ao:
                lab = 14
            if ra_in <= 0.0 and w >= w_tv and ias > 2.0 and outside_ao and outside_lv:
                lab = 15
            if laa <= 0.0 and outside_lv and outside_ao:
                lab = 14
            for n in range(2):
                qx, qy, qz = x - valves[n, 0], y - valves[n, 1], w - valves[n, 2]
                h = -(qx * valves[n, 3] + qy * valves[n, 4] + qz * valves[n, 5])
                rho2 = qx * qx + qy * qy + qz * qz - h * h
                if rho2 < valves[n, 6] ** 2 and -3.0 < h < 4.0 and (n == 0 or outside_lv):
                    lab = 12 if n == 0 else 13
            if w < w_mv and _ell1(x, y, w, lv_c, eye, lv_r) <= 0.0:
                lab = 12
            if lvot <= 0.0:
                lab = 12
            if ao_lumen <= 0.0:
                lab = 16
            for n in range(pap.shape[0]):
                if _ell1(x, y, w, pap[n], eye, pap_r) <= 0.0:
                    lab = 8
            if lab == 13 and _caps1(x, y, w, mb_ab[0], mb_ab[1], mb_r) <= 0.0:
                lab = 8
            for n in range(3):
                qx, qy, qz = x - valves[n, 0], y - valves[n, 1], w - valves[n, 2]
                h = qx * valves[n, 3] + qy * valves[n, 4] + qz * valves[n, 5]
                rho = math.sqrt(max(qx * qx + qy * qy + qz * qz - h * h, 0.0))
                if math.sqrt((rho - valves[n, 6] - 1.0) ** 2 + h * h) - 1.8 <= 0.0:
                    lab = 11
        out[m] = lab


#: Cardiac motion drawn wider than :func:`sample_heart_shape` does (field: (low, high), uniform):
#: failing and hyperdynamic ventricles, weak and strong twist, slow and fast rates.
WIDE_MOTION_RANGES: dict[str, tuple[float, float]] = {
    'heart_rate_bpm': (45.0, 140.0),
    'ejection_fraction': (0.25, 0.75),
    'long_shortening': (0.06, 0.22),
    'twist_deg': (0.0, 20.0),
}


def wide_motion(seed: int) -> dict[str, float]:
    """HeartShape overrides of seed ``seed``'s motion, drawn from ``WIDE_MOTION_RANGES`` with a stream of
    its own (the anatomy still follows the seed): pass as ``make_phantom(seed, heart=wide_motion(seed))``."""
    rng = np.random.default_rng([int(seed), 0x6D6F74])
    return {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in WIDE_MOTION_RANGES.items()}
