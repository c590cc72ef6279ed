"""Phantom generator: determinism, geometry, appearance, motion, valves, styles, views, cache, CLI.

Patients are generated on a coarse 2 mm grid (a test style) with few frames to keep this file fast.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from echoposed_ros.geometry import effective_error, gauge_fix, swing_twist
from echoposed_sim.phantom import (
    AcquisitionStyle,
    CardiacTiming,
    PhantomCache,
    PhantomError,
    Tissue,
    backward_points,
    build_patient,
    default_style,
    forward_points,
    load_style,
    make_phantom,
    sample_heart_shape,
    save_style,
    style_path,
)
from echoposed_sim.phantom.appearance import _leaflet_distance
from echoposed_sim.phantom.generate import _valve_rows
from echoposed_sim.volume_io import load_volume

COARSE = AcquisitionStyle(name='test-coarse', voxel_mm=2.0, psf_axial_mm=0.9, psf_lateral_mm=1.8,
                          psf_elevation_mm=2.0)
SMALL = (96.0, 96.0, 96.0)   # a cropped box: enough where only bytes, not the whole heart, matter


@pytest.fixture(scope='module')
def patient():
    """Seed 11 with labels, 10 frames, 2 mm voxels."""
    return build_patient(11, COARSE, frames=10, with_labels=True)


def _voxel(volume, p_v):
    i, j, k = np.round(np.asarray(p_v) / volume.spacing).astype(int)
    return k, j, i


def _mean_around(volume, frame, p_v, half=1):
    k, j, i = _voxel(volume, p_v)
    block = volume.data[frame, k - half:k + half + 1, j - half:j + half + 1, i - half:i + half + 1]
    return float(block.mean()) / 255.0


# ---------------------------------------------------------------- determinism, shapes
@pytest.mark.slow
def test_same_seed_same_bytes_and_different_seed_differs():
    a = make_phantom(3, COARSE, frames=3, extent_mm=SMALL)
    b = make_phantom(3, COARSE, frames=3, extent_mm=SMALL)
    c = make_phantom(4, COARSE, frames=3, extent_mm=SMALL)
    assert a.data.tobytes() == b.data.tobytes()
    assert a.meta == b.meta and a.radius == b.radius and np.array_equal(a.centre, b.centre)
    for name in a.views:
        assert np.array_equal(a.views[name].probe, b.views[name].probe)
    assert a.data.shape == c.data.shape
    assert np.mean(a.data != c.data) > 0.5
    assert a.meta['heart'] != c.meta['heart']


def test_shape_dtype_spacing_and_base_pose(patient):
    v = patient.volume
    assert v.data.dtype == np.uint8 and v.data.shape == (10, 88, 72, 72)
    assert np.array_equal(v.spacing, [2.0, 2.0, 2.0])
    assert np.array_equal(v.base_orbit, np.eye(3)) and np.array_equal(v.base_probe, np.eye(3))
    assert 65.0 < v.radius < 90.0
    # apical window at the top of the volume, LV centre inside the box
    assert 0.0 < v.centre[2] - v.radius < 10.0
    assert np.all(v.centre > 0) and np.all(v.centre < v.extent_mm)
    assert v.cycle_s == pytest.approx(60.0 / v.meta['heart']['heart_rate_bpm'])
    assert v.name == 'phantom:11' and v.meta['seed'] == 11
    # the LV centre is blood at end-diastole
    assert patient.labels[0][_voxel(v, v.centre)] == Tissue.BLOOD_LV


def test_heart_overrides_set_one_field_and_keep_the_rest():
    base = make_phantom(3, COARSE, frames=2, extent_mm=SMALL)
    fast = make_phantom(3, COARSE, frames=2, extent_mm=SMALL, heart={'heart_rate_bpm': 120})
    assert fast.cycle_s == pytest.approx(0.5) and fast.meta['heart']['heart_rate_bpm'] == 120.0
    assert fast.meta['heart']['lv_diameter'] == base.meta['heart']['lv_diameter']
    assert fast.meta['end_systole_phase'] > base.meta['end_systole_phase']
    with pytest.raises(PhantomError, match='heart_rat'):
        make_phantom(3, COARSE, heart={'heart_rat': 60})
    with pytest.raises(PhantomError, match='heart_rate_bpm'):
        make_phantom(3, COARSE, heart={'heart_rate_bpm': 500})


def test_bad_arguments_raise_phantom_error():
    with pytest.raises(PhantomError, match='seed'):
        make_phantom(-1, COARSE)
    with pytest.raises(PhantomError, match='frames'):
        make_phantom(1, COARSE, frames=1)
    with pytest.raises(PhantomError, match='extent_mm'):
        make_phantom(1, COARSE, extent_mm=(10, 10, 10))


# ---------------------------------------------------------------- appearance
def test_blood_darker_than_myocardium_and_pericardium_bright(patient):
    v, an, lab = patient.volume, patient.anatomy, patient.labels[0]
    s = an.shape
    lateral_wall = an.to_volume(np.array([-(an.lv_r * math.sqrt(s.lv_ellipticity) + s.wall / 2), 0.0, 0.0]))
    assert lab[_voxel(v, lateral_wall)] == Tissue.MYOCARDIUM
    blood = _mean_around(v, 0, v.centre)
    wall = _mean_around(v, 0, lateral_wall, half=0)
    assert blood < 0.15 and wall > blood + 0.2
    # by class over the whole frame
    img = v.data[0].astype(np.float32) / 255
    means = {t: img[lab == t].mean() for t in (Tissue.BLOOD_LV, Tissue.MYOCARDIUM, Tissue.PERICARDIUM)}
    assert means[Tissue.BLOOD_LV] < 0.5 * means[Tissue.MYOCARDIUM] < means[Tissue.PERICARDIUM]


def _slab_labels(n=40, vox=1.0):
    """(n, n, n) labels: LV blood where x < n/2 voxels, myocardium elsewhere (a flat wall, normal +x)."""
    lab = np.full((n, n, n), np.uint8(Tissue.MYOCARDIUM))
    lab[:, :, :n // 2] = Tissue.BLOOD_LV
    return lab


def test_wall_angle_factor_fades_walls_along_the_beam():
    from echoposed_sim.phantom.appearance import wall_angle_factor
    lab = _slab_labels()
    blood = lab >= Tissue.BLOOD_LV
    along = wall_angle_factor(blood, np.array([20.0, 20.0, -200.0]), 1.0, 0.8)    # beam along z: wall along it
    facing = wall_angle_factor(blood, np.array([-200.0, 20.0, 20.0]), 1.0, 0.8)   # beam along x: wall faces it
    k, j = 20, 20
    assert along[k, j, 21] == pytest.approx(0.2, abs=0.03) and facing[k, j, 21] == pytest.approx(1.0, abs=0.03)
    assert 0.2 - 0.03 <= float(along.min()) and float(along.max()) <= 1.0 + 1e-6
    # far from any cavity the normal is undefined: no change
    lab_far = np.full((40, 40, 40), np.uint8(Tissue.MYOCARDIUM))
    lab_far[:, :, :4] = Tissue.BLOOD_LV
    far = wall_angle_factor(lab_far >= Tissue.BLOOD_LV, np.array([20.0, 20.0, -200.0]), 1.0, 0.8)
    assert far[20, 20, 36] > 0.95


def test_trabeculae_are_strands_in_the_ventricles_near_the_wall():
    from echoposed_sim.phantom.appearance import trabeculae
    lab = _slab_labels()
    lab[:, :8, :20] = Tissue.BLOOD_LA                  # an atrium: no trabeculae there
    extra = trabeculae(lab, 1.5, 1.0, np.random.default_rng(0))
    assert extra.dtype == np.float32 and extra.shape == lab.shape
    assert not extra[lab == Tissue.MYOCARDIUM].any() and not extra[lab == Tissue.BLOOD_LA].any()
    near = extra[:, 10:, 18:20]                        # within 2 mm of the endocardium (x = 20)
    deep = extra[:, 10:, :8]                           # 12-20 mm inside the cavity
    assert 0.05 < float(np.mean(near > 0)) < 0.4       # strands, not a sheet
    assert float(near.max()) <= 1.5 and float(deep.mean()) < 0.1 * float(near.mean())   # exp(-d / 2.5 mm)
    again = trabeculae(lab, 1.5, 1.0, np.random.default_rng(0))
    assert np.array_equal(extra, again)


def test_cavity_clutter_hazes_the_blood_next_to_tissue_only():
    from echoposed_sim.phantom.appearance import cavity_clutter
    lab = _slab_labels()
    blood = lab >= Tissue.BLOOD_LV
    amp = np.where(blood, np.float32(0.05), np.float32(1.0)).astype(np.float32)
    haze = cavity_clutter(amp, blood, 0.1, 1.0)
    assert not haze[~blood].any()
    assert float(haze[20, 20, 19]) > 0.03 and float(haze[20, 20, 5]) < 1e-3
    assert np.allclose(cavity_clutter(amp, blood, 0.2, 1.0), 2 * haze, atol=1e-7)


def test_later_style_fields_keep_older_digests_and_change_the_walls():
    """The tissue-look fields count in the digest only when set, so cached phantoms of older styles
    stay valid; the clinical style darkens the endocardial edge relative to the wall's core."""
    from scipy import ndimage
    assert default_style().digest() == 'afd562120ef8771a'            # as before the fields existed
    assert load_style(style_path('vendor_c')).digest() == 'bcd685efd2382a54'
    assert AcquisitionStyle(specular_gain=8.0).digest() == default_style().digest()
    assert AcquisitionStyle(trabeculation=1.0).digest() != default_style().digest()
    clinical = load_style(style_path('clinical'))
    assert clinical.name == 'clinical' and clinical.wall_anisotropy > 0 and clinical.specular_gain < 8
    with pytest.raises(PhantomError, match='wall_anisotropy'):
        AcquisitionStyle(wall_anisotropy=1.5)
    ratios, cavity = {}, {}
    for name, style in (('default', AcquisitionStyle(name='t')), ('clinical', clinical)):
        parts = build_patient(11, style, frames=2, with_labels=True)
        lab, img = parts.labels[0], parts.volume.data[0].astype(np.float32)
        myo, lv = lab == Tissue.MYOCARDIUM, lab == Tissue.BLOOD_LV
        edge = myo & ndimage.binary_dilation(lv)                          # myocardium touching LV blood
        core = myo & ~ndimage.binary_dilation(lv | ~myo, iterations=3)    # 3 voxels into the wall
        ratios[name] = float(img[edge].mean() / img[core].mean())
        cavity[name] = float(img[lv & ~ndimage.binary_dilation(~lv, iterations=4)].mean())
        assert parts.volume.meta['heart'] == build_patient(11, COARSE, frames=2).volume.meta['heart']
    # default: the edge as bright as the core (plus a bright line on the blood side); clinical: the
    # wall fades into the cavity, and the cavity holds haze and strands
    assert ratios['default'] > 0.95 and ratios['clinical'] < 0.9
    assert cavity['clinical'] > 2.0 * cavity['default']


def test_speckle_moves_with_the_myocardium(patient):
    """Sampled at the moving material points of the myocardium, frames stay correlated (speckle
    is attached to tissue); sampled at fixed points they decorrelate as the wall moves."""
    from scipy import ndimage
    v, an, timing = patient.volume, patient.anatomy, patient.timing
    k, j, i = np.nonzero(patient.labels[0] == Tissue.MYOCARDIUM)
    material = an.to_heart(np.stack([i, j, k], axis=1) * v.spacing)

    def sample(frame, points_h):
        idx = an.to_volume(points_h) / v.spacing
        return ndimage.map_coordinates(v.data[frame].astype(np.float32), idx[:, ::-1].T, order=1)

    frames = v.frames
    a, b = 0, int(round(0.8 * timing.t_es * frames))
    xa = forward_points(material, patient.motion.params(timing.contraction(a / frames)))
    xb = forward_points(material, patient.motion.params(timing.contraction(b / frames)))
    assert np.linalg.norm(xb - xa, axis=1).mean() > 4.0          # the wall really moved
    tracked = np.corrcoef(sample(a, xa), sample(b, xb))[0, 1]
    fixed = np.corrcoef(sample(a, xa), sample(b, xa))[0, 1]
    assert tracked > 0.7 and fixed < 0.5 * tracked


# ---------------------------------------------------------------- motion
def test_lv_volume_changes_with_plausible_ejection_fraction(patient):
    counts = np.array([(lab == Tissue.BLOOD_LV).sum() for lab in patient.labels], dtype=np.float64)
    ef = (counts.max() - counts.min()) / counts.max()
    assert 0.5 <= ef <= 0.7, ef
    assert int(np.argmax(counts)) in (0, 9) or counts[0] > 0.97 * counts.max()
    es = patient.volume.meta['end_systole_frame']
    assert counts[es] < 1.05 * counts.min()
    target = patient.volume.meta['heart']['ejection_fraction']
    assert ef == pytest.approx(target, abs=0.04)


def test_twist_apex_and_base_turn_opposite_about_ten_degrees(patient):
    an, motion = patient.anatomy, patient.motion
    psi = np.linspace(0, 2 * np.pi, 24, endpoint=False)

    def ring(w):
        r = an.lv_cavity_radius(w) + an.shape.wall / 2
        return np.stack([r * np.cos(psi), r * np.sin(psi), np.full_like(psi, w)], axis=1)

    def turn(points):
        moved = forward_points(points, motion.params(1.0))
        a0 = np.arctan2(points[:, 1], points[:, 0])
        a1 = np.arctan2(moved[:, 1], moved[:, 0])
        return float(np.rad2deg(np.mean(np.angle(np.exp(1j * (a1 - a0))))))

    apex = turn(ring(an.w_apex_endo + 4.0))
    base = turn(ring(an.w_mv - 2.0))
    assert apex < 0 < base  # about +w (apex -> base): apex clockwise, base counter-clockwise
    twist = base - apex
    assert 8.0 <= twist <= 12.0
    assert twist == pytest.approx(an.shape.twist_deg, abs=1.0)
    # no motion at end-diastole, and backward undoes forward everywhere
    pts = np.random.default_rng(0).uniform(-80, 110, size=(2000, 3))
    assert np.allclose(forward_points(pts, motion.params(0.0)), pts)
    for f in (0.3, 1.0):
        back = backward_points(forward_points(pts, motion.params(f)), motion.params(f))
        assert np.allclose(back, pts, atol=1e-6)


def test_contraction_cycle_and_heart_rate(patient):
    timing = patient.timing
    assert timing.contraction(0.0) == 0.0 and timing.contraction(timing.t_es) == pytest.approx(1.0)
    assert timing.contraction(0.999) < 0.05
    shapes = [sample_heart_shape(np.random.default_rng(s)) for s in range(20)]
    for field in ('heart_rate_bpm', 'lv_diameter', 'wall', 'tilt_deg', 'echo_myocardium'):
        values = [getattr(h, field) for h in shapes]
        assert len(set(values)) >= 15 and np.std(values) > 0
    assert all(50 <= h.heart_rate_bpm <= 100 for h in shapes)
    fast = CardiacTiming(95.0)
    slow = CardiacTiming(55.0)
    assert fast.cycle_s < slow.cycle_s and fast.t_es > slow.t_es   # systole takes more of a fast cycle


# ---------------------------------------------------------------- valves
def test_leaflets_closed_in_systole_open_in_diastole(patient):
    an, timing = patient.anatomy, patient.timing
    t_sys = 0.5 * timing.t_es
    t_dia = timing.t_mv_open + 0.1 / timing.cycle_s
    assert timing.mitral_open(t_sys) == 0.0 and timing.mitral_open(t_dia) == 1.0
    assert timing.aortic_open(t_sys) == 1.0 and timing.aortic_open(t_dia) == 0.0
    mv = an.mitral
    axis_line = [mv.centre + mv.coapt + h * mv.axis for h in np.linspace(-4, 25, 117)]

    def blocked(t, row):
        rows = _valve_rows(an, timing.mitral_open(t), timing.aortic_open(t))
        return min(_leaflet_distance(p[0], p[1], p[2], rows[row]) for p in axis_line)

    assert blocked(t_sys, 0) <= 0.0 < 2.0 < blocked(t_dia, 0)      # mitral
    av = an.aortic
    ao_line = [av.centre + av.coapt + h * av.axis for h in np.linspace(-6, 25, 125)]
    rows_s = _valve_rows(an, 0.0, 1.0)
    rows_d = _valve_rows(an, 1.0, 0.0)
    assert min(_leaflet_distance(*p, rows_d[2]) for p in ao_line) <= 0.0      # aortic closed in diastole
    assert min(_leaflet_distance(*p, rows_s[2]) for p in ao_line) > 2.0       # open in systole
    # in the rendered labels: leaflet voxels near the mitral coaptation point in systole only
    frames = patient.volume.frames
    sys_frame, dia_frame = round(t_sys * frames) % frames, round(t_dia * frames) % frames
    assert timing.mitral_open(sys_frame / frames) == 0.0 and timing.mitral_open(dia_frame / frames) > 0.9

    def leaflet_voxels_on_axis(frame):
        p = patient.motion.params(timing.contraction(frame / frames))
        line = forward_points(np.array(axis_line[:60]), p)
        pts = an.to_volume(line)
        return sum(patient.labels[frame][_voxel(patient.volume, q)] == Tissue.VALVE for q in pts)

    assert leaflet_voxels_on_axis(sys_frame) >= 1
    assert leaflet_voxels_on_axis(dia_frame) == 0


# ---------------------------------------------------------------- styles
def test_style_yaml_round_trip_and_shipped_files(tmp_path):
    assert default_style() == AcquisitionStyle()
    vendor = load_style(style_path('vendor_b'))
    assert vendor.name == 'vendor_b' and vendor != default_style()
    assert vendor.digest() != default_style().digest()
    path = save_style(vendor, tmp_path / 'v.yaml')
    assert load_style(path) == vendor
    partial = tmp_path / 'partial.yaml'
    partial.write_text('name: noisy\nnoise_db: -30\n')
    style = load_style(partial)
    assert style.noise_db == -30.0 and style.voxel_mm == default_style().voxel_mm


@pytest.mark.parametrize('text, culprit', [
    ('name: x\nbogus_field: 1\n', 'bogus_field'),
    ('dynamic_range_db: loud\n', 'dynamic_range_db'),
    ('voxel_mm: -1\n', 'voxel_mm'),
    ('- a list\n- not a mapping\n', 'mapping'),
    ('gain_db: [1, 2\n', 'YAML'),
])
def test_bad_style_file_names_file_and_field(tmp_path, text, culprit):
    path = tmp_path / 'bad.yaml'
    path.write_text(text)
    with pytest.raises(PhantomError) as err:
        load_style(path)
    assert str(path) in str(err.value) and culprit in str(err.value)
    with pytest.raises(PhantomError, match='cannot read'):
        load_style(tmp_path / 'missing.yaml')


def test_vendor_style_changes_appearance_not_anatomy():
    coarse_b = AcquisitionStyle(**{**load_style(style_path('vendor_b')).as_dict(), 'voxel_mm': 2.0})
    a = make_phantom(5, COARSE, frames=2, extent_mm=SMALL)
    b = make_phantom(5, coarse_b, frames=2, extent_mm=SMALL)
    assert a.meta['heart'] == b.meta['heart'] and a.radius == b.radius
    assert a.data.shape == b.data.shape and np.mean(a.data != b.data) > 0.5


# ---------------------------------------------------------------- standard views
def test_standard_views_canonical_distinct_and_anatomical(patient):
    v, an = patient.volume, patient.anatomy
    assert set(v.views) == {'A4C', 'A2C', 'A3C'}
    kp = {k: an.to_volume(p) for k, p in an.key_points().items()}
    for view in v.views.values():
        for m in (view.orbit, view.probe):
            assert np.allclose(m @ m.T, np.eye(3), atol=1e-9) and np.linalg.det(m) == pytest.approx(1.0)
        _, tau = swing_twist(view.orbit)
        assert abs(float(tau)) < 1e-9
        fixed = gauge_fix((view.orbit, view.probe))
        assert np.allclose(fixed.orbit, view.orbit, atol=1e-9) and np.allclose(fixed.probe, view.probe, atol=1e-9)
        # probe apex on the orbit sphere, just outside the epicardial apex (chest wall)
        o = v.centre - v.radius * view.orbit[:, 2]
        assert 10.0 < np.linalg.norm(o - kp['apex']) < 40.0
    names = sorted(v.views)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ga, gb = v.views[a], v.views[b]
            assert math.degrees(float(effective_error((ga.orbit, ga.probe), (gb.orbit, gb.probe)))) > 30.0

    def probe_x(name, point):
        view = v.views[name]
        R = view.orbit @ view.probe
        o = v.centre - v.radius * view.orbit[:, 2]
        return float((R.T @ (point - o))[0])

    assert probe_x('A4C', kp['tricuspid']) < -10.0 < 10.0 < probe_x('A4C', kp['mitral']) + 20.0
    assert probe_x('A3C', kp['aortic']) > 10.0
    # A2C: turned about the beam from A4C by about 60 degrees, the RV stays out of its plane
    R4 = v.views['A4C'].orbit @ v.views['A4C'].probe
    R2 = v.views['A2C'].orbit @ v.views['A2C'].probe
    R3 = v.views['A3C'].orbit @ v.views['A3C'].probe
    turn2 = math.degrees(math.acos(np.clip(R4[:, 0] @ R2[:, 0], -1, 1)))
    turn3 = math.degrees(math.acos(np.clip(R4[:, 0] @ R3[:, 0], -1, 1)))
    assert 45 < turn2 < 75 and 95 < turn3 < 150


def test_turning_the_probe_about_the_beam_changes_the_image():
    from echoposed_sim.sector import SectorGeometry
    from echoposed_sim.slicer import slice_volume
    v = make_phantom(6, COARSE, frames=2)
    sector = SectorGeometry(height=64, width=64)
    view = v.views['A4C']
    img = slice_volume(v, view.orbit, view.probe, 0.0, sector)
    flip = np.diag([-1.0, -1.0, 1.0])   # Rz(pi): the mirror image
    mirrored = slice_volume(v, view.orbit, view.probe @ flip, 0.0, sector)
    assert np.allclose(mirrored, img[:, ::-1], atol=1e-5)
    # the A4C is not left-right symmetric (RV on one side): a turn by pi is visible
    assert np.mean(np.abs(img - img[:, ::-1])) > 0.05


# ---------------------------------------------------------------- cache
def test_cache_round_trip_and_memory_bound(tmp_path):
    cache = PhantomCache(tmp_path / 'cache', max_in_memory=1, style=COARSE, frames=2, extent_mm=SMALL)
    a = cache.get(1)
    assert cache.generated == 1 and cache.path(1).is_file() and 1 in cache
    assert cache.get(1) is a and cache.hits == 1
    b = cache.get(2)
    assert cache.in_memory == [2] and cache.memory_bytes == b.data.nbytes
    a2 = cache.get(1)                       # from disk, not regenerated
    assert cache.loads == 1 and cache.generated == 2 and cache.in_memory == [1]
    assert a2.data.tobytes() == a.data.tobytes() and a2.meta == a.meta and a2.radius == a.radius
    assert np.allclose(a2.views['A3C'].probe, a.views['A3C'].probe)
    # a second cache on the same folder loads; another style or frame count is another key
    other = PhantomCache(tmp_path / 'cache', max_in_memory=0, style=COARSE, frames=2, extent_mm=SMALL)
    assert other.get(2).data.tobytes() == b.data.tobytes() and other.loads == 1 and other.in_memory == []
    assert PhantomCache(tmp_path / 'cache', style=COARSE, frames=3, extent_mm=SMALL).key(1) != cache.key(1)
    assert PhantomCache(tmp_path / 'cache', style=COARSE, frames=2).key(1) != cache.key(1)
    # a broken file is regenerated
    cache.path(2).write_bytes(b'not a zip file')
    cache.clear_memory()
    assert cache.get(2).data.tobytes() == b.data.tobytes() and cache.generated == 3
    with pytest.raises(PhantomError, match='max_in_memory'):
        PhantomCache(tmp_path, max_in_memory=-1)


# ---------------------------------------------------------------- command line
def test_cli_writes_one_patient(tmp_path, capsys):
    from echoposed_ros.cli import main
    style = save_style(COARSE, tmp_path / 'coarse.yaml')
    out = tmp_path / 'p.npz'
    assert main(['phantom', '--seed', '9', '--out', str(out), '--style', str(style), '--frames', '2']) == 0
    assert 'phantom seed 9' in capsys.readouterr().out
    loaded = load_volume(out)
    expected = make_phantom(9, COARSE, frames=2)
    assert loaded.data.tobytes() == expected.data.tobytes() and set(loaded.views) == {'A4C', 'A2C', 'A3C'}
    bad = tmp_path / 'bad.yaml'
    bad.write_text('psf_axial_mm: 0\n')
    assert main(['phantom', '--seed', '9', '--out', str(out), '--style', str(bad)]) == 2
    assert 'psf_axial_mm' in capsys.readouterr().err


# ---------------------------------------------------------------- labels kernel vs numpy oracle
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_label_kernel_matches_numpy_reference(seed):
    from echoposed_sim.phantom import Anatomy
    shape = sample_heart_shape(np.random.default_rng(seed))
    anatomy = Anatomy(shape, np.array([72.0, 72.0, 80.0]), 75.0)
    pts = np.random.default_rng(seed + 10).uniform([0, 0, 0], [144, 144, 176], size=(60000, 3)).T
    pts = np.ascontiguousarray(pts, np.float32)
    fast, slow = anatomy.labels(pts), anatomy.labels_reference(pts)
    assert np.array_equal(fast, slow)
    assert len(np.unique(slow)) >= 15     # the sample reaches nearly every tissue


def test_standard_views_show_their_chambers(patient):
    """Blood pools in each view's fan at end-diastole: A4C all four chambers and no aorta,
    A2C LV and LA only, A3C LV, LA and aorta but no RA."""
    from echoposed_sim.sector import SectorGeometry
    v, lab = patient.volume, patient.labels[0]
    sector = SectorGeometry(depth_mm=170.0)
    pts = sector.points[sector.mask]

    def fractions(name):
        view = v.views[name]
        R = view.orbit @ view.probe
        o = v.centre - v.radius * view.orbit[:, 2]
        idx = np.round((o + pts @ R.T) / v.spacing).astype(int)
        ok = np.all((idx >= 0) & (idx < np.array(lab.shape[::-1])), axis=1)
        seen = lab[idx[ok, 2], idx[ok, 1], idx[ok, 0]]
        return {t: float(np.mean(seen == t)) for t in (Tissue.BLOOD_LV, Tissue.BLOOD_RV, Tissue.BLOOD_LA,
                                                        Tissue.BLOOD_RA, Tissue.BLOOD_AO)}

    a4c, a2c, a3c = fractions('A4C'), fractions('A2C'), fractions('A3C')
    lv, rv, la, ra, ao = Tissue.BLOOD_LV, Tissue.BLOOD_RV, Tissue.BLOOD_LA, Tissue.BLOOD_RA, Tissue.BLOOD_AO
    assert min(a4c[lv], a4c[rv], a4c[la], a4c[ra]) > 0.03 and a4c[ao] < 0.005
    assert min(a2c[lv], a2c[la]) > 0.03 and max(a2c[rv], a2c[ra], a2c[ao]) < 0.01
    assert min(a3c[lv], a3c[la], a3c[ao]) > 0.03 and a3c[ra] < 0.005 and a3c[rv] < 0.06
    assert a4c[lv] > a4c[rv]      # the LV is the larger ventricle
