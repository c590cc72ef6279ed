"""Estimator end to end on tiny analytic ONNX models (echoposed_ros.estimator.Estimator)."""
from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from echoposed_ros.estimator import Estimator, EstimatorError, FanGeometry, model_fan
from echoposed_ros.estimator.synthetic import default_metadata, write_model
from echoposed_ros.geometry import gauge_fix, matrix_to_quat_xyzw, rot_x, rot_z
from echoposed_sim import sector as sector_mod
from echoposed_sim import slicer
from echoposed_sim import volume as volume_mod

K = 5
DELTA = np.radians([-6.0, -3.0, 0.0, 3.0, 6.0])     # probe members: R0 Rz(delta_k)
EPS = np.radians([4.0, -2.0, 0.0, 2.0, -4.0])       # orbit members: S0 Rx(eps_k)
S0 = Rotation.from_rotvec([0.2, -0.1, 0.7]).as_matrix()
R0 = Rotation.from_rotvec([-0.3, 0.5, 1.1]).as_matrix()
H = W = 64
ANGLE = math.radians(75.0)


@pytest.fixture(scope='module')
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp('model') / 'ens.onnx'
    return write_model(path, S0 @ rot_x(EPS), R0 @ rot_z(DELTA), height=H, width=W, gain=2.0)


@pytest.fixture(scope='module')
def constant_model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp('model') / 'const.onnx'
    # raw outputs are scaled rotations (not rotations): the runtime must project them
    return write_model(path, 3.0 * (S0 @ rot_x(EPS)), 0.5 * (R0 @ rot_z(DELTA)), height=H, width=W, gain=0.0)


def fan_image(mean_inside: float, shape=(H, W), fan=None):
    fan = fan or model_fan(H, W, ANGLE)
    mask = fan.mask(shape)
    rng = np.random.default_rng(0)
    img = np.where(mask, np.clip(mean_inside + 0.1 * rng.standard_normal(shape), 0.01, 1.0), 0.0)
    return img.astype(np.float32)


def expected_pose(image_mean: float):
    turn = rot_z(2.0 * image_mean)
    return gauge_fix((S0 @ turn, R0 @ turn))


def test_known_mean_and_sigma2_from_disagreeing_members(constant_model_path):
    est = Estimator(constant_model_path)
    e = est.estimate(fan_image(0.5))
    # symmetric spreads: the projected means are S0 and R0; sigma^2 = mean(delta^2) + mean(eps^2)
    expected = gauge_fix((S0, R0))
    np.testing.assert_allclose(e.orbit, expected.orbit, atol=1e-5)
    np.testing.assert_allclose(e.probe, expected.probe, atol=1e-5)
    assert e.sigma2 == pytest.approx(np.mean(DELTA ** 2) + np.mean(EPS ** 2), rel=1e-4)
    assert e.member_orbits.shape == e.member_probes.shape == (K, 3, 3)
    np.testing.assert_allclose(e.member_probes, R0 @ rot_z(DELTA), atol=1e-5)
    # members are projected exactly onto SO(3) although the raw outputs were not rotations
    np.testing.assert_allclose(e.member_orbits @ np.swapaxes(e.member_orbits, 1, 2),
                               np.broadcast_to(np.eye(3), (K, 3, 3)), atol=1e-10)
    # the mean is in canonical gauge: no twist about z in the orbit factor
    q = Rotation.from_matrix(e.orbit).as_quat()
    assert abs(q[2]) < 1e-7
    np.testing.assert_allclose(e.orbit_xyzw, matrix_to_quat_xyzw(e.orbit))
    np.testing.assert_allclose(e.probe_xyzw, matrix_to_quat_xyzw(e.probe))
    assert e.inference_s > 0 and e.total_s >= e.inference_s


def test_estimate_follows_the_image_and_batches_keep_order(model_path):
    est = Estimator(model_path)
    images = [fan_image(m) for m in (0.2, 0.7, 0.45)]
    batch = est.estimate_batch(images)
    for img, e in zip(images, batch):
        exp = expected_pose(float(img.mean()))
        np.testing.assert_allclose(e.orbit, exp.orbit, atol=2e-5)
        np.testing.assert_allclose(e.probe, exp.probe, atol=2e-5)
        single = est.estimate(img)
        np.testing.assert_allclose(single.probe, e.probe, atol=1e-6)
    orbit, probe, sigma2 = est.predict(np.stack(images), batch_size=2)
    assert orbit.shape == probe.shape == (3, 3, 3) and sigma2.shape == (3,)
    np.testing.assert_allclose(probe[1], batch[1].probe, atol=1e-6)
    np.testing.assert_allclose(sigma2, [e.sigma2 for e in batch], rtol=1e-6)
    m_v, m_p, m_s2 = est.predict_members(np.stack(images), batch_size=2)
    assert m_v.shape == m_p.shape == (3, est.members, 3, 3)
    np.testing.assert_allclose(m_s2, sigma2, rtol=1e-12)
    np.testing.assert_allclose(m_v[2], batch[2].member_orbits, atol=1e-6)
    empty = est.predict(np.zeros((0,) + images[0].shape, np.float32))
    assert [a.shape for a in empty] == [(0, 3, 3), (0, 3, 3), (0,)]


@pytest.mark.parametrize('encoding', ['mono8', 'mono16', 'rgb8', 'bgr8', '32FC1'])
def test_every_encoding_gives_the_same_estimate(model_path, encoding):
    est = Estimator(model_path)
    grey = fan_image(0.6)
    if encoding == 'mono8':
        data = np.round(grey * 255).astype(np.uint8)
    elif encoding == 'mono16':
        data = np.round(grey * 65535).astype(np.uint16)
    elif encoding in ('rgb8', 'bgr8'):
        data = np.repeat(np.round(grey * 255).astype(np.uint8)[..., None], 3, axis=2)
    else:
        data = grey
    e = est.estimate(data, encoding=encoding)
    ref = est.estimate(grey)
    assert np.degrees(Rotation.from_matrix(e.probe.T @ ref.probe).magnitude()) < 0.05


def test_other_image_size_is_mapped_onto_the_model_fan(model_path):
    est = Estimator(model_path)
    big_fan = FanGeometry.square(-6.0, 150.0, ANGLE, 250.0)
    # the same analytic scene, drawn on a 260 x 300 scanner-like frame with square pixels
    x, z = big_fan.plane_coords((260, 300))
    scene = lambda x, z: 0.3 + 0.5 * z + 0.1 * np.sin(6 * x)  # noqa: E731
    frame = np.where(big_fan.mask((260, 300)), scene(x, z), 0.0).astype(np.float32)
    mf = est.model_fan
    xm, zm = mf.plane_coords((H, W))
    model_view = np.where(mf.mask((H, W)), scene(xm, zm), 0.0).astype(np.float32)
    e = est.estimate(frame)
    assert e.fan.apex_col == pytest.approx(150.0, abs=1.0)
    assert math.degrees(e.fan.angle_rad) == pytest.approx(75.0, abs=1.0)
    prepared, _ = est.prepare(frame)
    assert prepared.shape == (H, W)
    assert abs(float(prepared.mean()) - float(model_view.mean())) < 0.01
    exp = expected_pose(float(prepared.mean()))
    np.testing.assert_allclose(e.probe, exp.probe, atol=2e-5)
    # 'auto' caches the detected fan per image size; a fixed fan is used as given
    assert est._detected[(260, 300)] == e.fan
    fixed = Estimator(model_path, fan=big_fan)
    assert fixed.estimate(frame).fan == big_fan


def test_model_size_frame_passes_unchanged(model_path):
    est = Estimator(model_path)
    img = fan_image(0.4)
    prepared, fan = est.prepare(img)
    np.testing.assert_array_equal(prepared, img)
    assert fan == est.model_fan


def test_fan_mode_model_refuses_other_sizes(model_path):
    est = Estimator(model_path, fan='model')
    with pytest.raises(EstimatorError, match='differs from the model input 64 x 64'):
        est.estimate(fan_image(0.4, shape=(80, 80)), name='frame.png')
    with pytest.raises(EstimatorError, match='fan ='):
        Estimator(model_path, fan='guess')


def test_blank_frame_of_other_size_is_a_clear_error(model_path):
    est = Estimator(model_path)
    with pytest.raises(EstimatorError, match=r'^blank.png: blank frame \(every pixel is 0\)'):
        est.estimate(np.zeros((100, 120), np.uint8), name='blank.png')


def test_a_dim_frame_without_a_fan_is_still_no_sector_fan(model_path):
    est = Estimator(model_path, detect_threshold=0.02)
    dim = np.zeros((100, 120), np.float32)
    dim[50, 60] = 0.5   # one bright speck: not blank, but no fan either
    with pytest.raises(EstimatorError, match='^dim.png: no sector fan found'):
        est.estimate(dim, name='dim.png')


@pytest.mark.parametrize('fan_mode', ['auto', 'detect', 'model'])
@pytest.mark.parametrize('blank, why', [
    (lambda shape: np.zeros(shape, np.uint8), r'every pixel is 0\b'),
    (lambda shape: np.full(shape, 0.6, np.float32), r'every pixel is 0.6\b'),
    (lambda shape: np.linspace(0.0, 0.015, shape[0] * shape[1], dtype=np.float32).reshape(shape),
     r'brightest pixel 0.015 is not above the fan threshold 0.02'),
], ids=['zero', 'constant', 'below-threshold'])
def test_blank_frames_are_refused_after_a_real_frame_of_their_size(model_path, fan_mode, blank, why):
    # a fan cached from a real frame of the same size must not make a blank frame valid
    est = Estimator(model_path, fan=fan_mode, detect_threshold=0.02)
    shapes = [(H, W)] if fan_mode == 'model' else [(H, W), (96, 96)]
    for shape in shapes:
        real = fan_image(0.4, shape=shape, fan=model_fan(*shape, ANGLE))
        assert est.estimate(real).sigma2 >= 0.0
        with pytest.raises(EstimatorError, match=f'^frame: blank frame .*{why}'):
            est.estimate(blank(shape), name='frame')
        assert est.estimate(real).sigma2 >= 0.0   # and the next real frame is estimated


def test_non_finite_output_is_reported(tmp_path):
    bad = np.full((K, 3, 3), np.nan)
    path = write_model(tmp_path / 'nan.onnx', bad, bad, height=H, width=W)
    est = Estimator(path)
    with pytest.raises(EstimatorError, match=f'model file {tmp_path / "nan.onnx"}: output .orbit. holds NaN'):
        est.estimate(fan_image(0.5))


def test_metadata_square_pixels_changes_the_model_fan(tmp_path):
    meta = default_metadata(K, H, W)
    meta['square_pixels'] = 'true'
    path = write_model(tmp_path / 'sq.onnx', S0 @ rot_x(EPS), R0 @ rot_z(DELTA), metadata=meta)
    assert Estimator(path).model_fan == model_fan(H, W, ANGLE, square_pixels=True)


def test_runtime_package_never_imports_torch_or_onnx():
    pkg = Path(__file__).resolve().parents[2] / 'echoposed_ros' / 'estimator'
    for f in sorted(pkg.glob('*.py')):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ''] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith('torch'), f'{f.name} imports {name}'
    code = ('import sys, echoposed_ros.estimator as e; e.Estimator; '
            'assert "torch" not in sys.modules and "onnx" not in sys.modules, sorted(sys.modules)')
    subprocess.run([sys.executable, '-c', code], check=True)


def test_simulator_slice_of_the_model_sector_reaches_the_network_unchanged(model_path):
    est = Estimator(model_path)
    info = est.model.info
    sector = sector_mod.SectorGeometry(info.sector_angle_rad, info.sector_depth_mm, info.input_height,
                                       info.input_width)
    rng = np.random.default_rng(1)
    vol = volume_mod.Volume(data=(rng.random((1, 40, 40, 40)) * 0.9 + 0.1).astype(np.float32),
                            spacing=np.full(3, 6.0), centre=np.full(3, 117.0), radius=80.0)
    img = slicer.slice_volume(vol, np.eye(3), rot_z(0.3), 0.0, sector)
    prepared, fan = est.prepare(img)
    assert fan == est.model_fan
    np.testing.assert_array_equal(prepared, img)
    assert prepared.dtype == np.float32
    # every lit pixel of the slice is inside the fan the estimator assumes
    assert np.all(est.model_fan.mask(img.shape)[img > 0])
    # mono8 of the same slice: the same pixels, quantised
    mono = np.round(img * 255).astype(np.uint8)
    np.testing.assert_allclose(est.prepare(mono)[0], mono / np.float32(255), atol=0)


@pytest.mark.parametrize('h, w, deg', [(300, 360, 75.0), (240, 320, 90.0)])
def test_scanner_sized_slice_maps_onto_the_model_slice_of_the_same_plane(model_path, h, w, deg):
    """The same plane sliced at the model's geometry and at a scanner-like size (square pixels,
    other angle): after fan detection and resampling, the two model inputs agree."""
    from scipy import ndimage
    est = Estimator(model_path)
    info = est.model.info
    rng = np.random.default_rng(5)
    smooth = ndimage.gaussian_filter(rng.random((48, 48, 48)), 2.0)
    smooth = (smooth - smooth.min()) / np.ptp(smooth) * 0.9 + 0.1
    vol = volume_mod.Volume(data=smooth[None].astype(np.float32), spacing=np.full(3, 4.0),
                            centre=np.full(3, 94.0), radius=60.0)
    probe = rot_z(0.5)[None]
    model_sector = sector_mod.SectorGeometry(info.sector_angle_rad, info.sector_depth_mm, H, W)
    scanner = sector_mod.SectorGeometry(math.radians(deg), info.sector_depth_mm, h, w, square_pixels=True)
    direct = slicer.slice_batch(vol, np.eye(3)[None], probe, np.zeros(1), model_sector)[0]
    frame = slicer.slice_batch(vol, np.eye(3)[None], probe, np.zeros(1), scanner)[0]
    prepared, fan = est.prepare(np.round(frame * 255).astype(np.uint8))
    assert math.degrees(fan.angle_rad) == pytest.approx(deg, abs=0.5)
    inner = est.model_fan.mask((H, W), angle_rad=min(ANGLE, math.radians(deg)) - 0.05, radius=0.97)
    assert np.all(prepared[~est.model_fan.mask((H, W))] == 0)
    assert np.corrcoef(direct[inner], prepared[inner])[0, 1] > 0.99     # 10 px off: < 0.75
    assert np.abs(direct[inner] - prepared[inner]).mean() < 0.006       # 10 px off: > 0.025


def test_mirror_tta_doubles_members_and_is_exactly_mirror_equivariant(model_path):
    # a stand-in network that is not flip-invariant: outputs follow the image's left-right centre of mass
    def run(batch):
        batch = np.asarray(batch, np.float64)
        cols = np.arange(batch.shape[-1]) - (batch.shape[-1] - 1) / 2
        c = (batch * cols).sum((1, 2)) / batch.sum((1, 2)) / batch.shape[-1]   # in [-0.5, 0.5]
        k = np.arange(K)
        orbit = Rotation.from_rotvec(np.stack([0.1 * k[None] + c[:, None], 0 * c[:, None] + 0.02 * k[None],
                                               0 * c[:, None] + 0 * k[None]], -1).reshape(-1, 3)).as_matrix()
        probe = Rotation.from_rotvec(np.stack([0.05 * k[None] + 0 * c[:, None], 0 * c[:, None] + 0 * k[None],
                                               0.3 + 2 * c[:, None] + 0.04 * k[None]], -1).reshape(-1, 3)).as_matrix()
        n = batch.shape[0]
        return orbit.reshape(n, K, 3, 3).astype(np.float32), probe.reshape(n, K, 3, 3).astype(np.float32)

    plain, tta = Estimator(model_path, fan='model'), Estimator(model_path, fan='model', mirror=True)
    for est in (plain, tta):
        est.model.run = run
    rng = np.random.default_rng(5)
    x = fan_image(0.5) * rng.uniform(0.2, 1.0, (1, W)).astype(np.float32)  # brighter on some columns
    e_plain, e = plain.estimate(x), tta.estimate(x)
    assert plain.members == K and tta.members == 2 * K
    assert e_plain.member_probes.shape == (K, 3, 3) and e.member_probes.shape == (2 * K, 3, 3)
    m = tta.estimate(np.ascontiguousarray(x[:, ::-1]))
    np.testing.assert_allclose(m.probe, e.probe @ rot_z(np.pi), atol=1e-6)
    np.testing.assert_allclose(m.orbit, e.orbit, atol=1e-6)
    assert m.sigma2 == pytest.approx(e.sigma2, rel=1e-6)
    # the mirrored half is the flipped image's members turned back by Rz(pi)
    flipped = plain.estimate(np.ascontiguousarray(x[:, ::-1]))
    np.testing.assert_allclose(e.member_probes[K:], flipped.member_probes @ rot_z(np.pi), atol=1e-6)
    # this stand-in does not know mirrors: the disagreement shows in sigma^2
    assert e.sigma2 > e_plain.sigma2 + 0.1
