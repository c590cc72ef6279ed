"""Image encodings, fan geometry and detection, fan-to-fan resampling (echoposed_ros.estimator)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from echoposed_ros.estimator import (
    EstimatorError,
    FanGeometry,
    decode_buffer,
    detect_fan,
    image_to_float,
    infer_encoding,
    map_to_model,
    model_fan,
)
from echoposed_sim import sector as sector_mod
from echoposed_sim import slicer
from echoposed_sim import volume as volume_mod

RNG = np.random.default_rng(7)


def field(x, z):
    """A smooth analytic intensity on the imaging plane (units of the fan depth D), in [0.1, 0.9]."""
    return 0.5 + 0.25 * np.sin(5.0 * x + 1.0) * np.cos(4.0 * z) + 0.15 * z


def render(fan: FanGeometry, shape, angle_rad=None):
    x, z = fan.plane_coords(shape)
    return np.where(fan.mask(shape, angle_rad=angle_rad), field(x, z), 0.0).astype(np.float32)


# --- encodings ----------------------------------------------------------------------------------

def test_mono8_mono16_float():
    g8 = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_float(g8, 'mono8'), g8.astype(np.float32) / np.float32(255))
    assert image_to_float(np.full((2, 2), 255, np.uint8), 'mono8').max() == pytest.approx(1.0)
    g16 = RNG.integers(0, 65536, (5, 7), dtype=np.uint16)
    np.testing.assert_allclose(image_to_float(g16, 'mono16'), g16 / 65535.0, rtol=1e-6)
    f = RNG.random((5, 7)).astype(np.float32) * 1.4 - 0.2
    out = image_to_float(f, '32FC1')
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out, np.clip(f, 0, 1))
    assert image_to_float(g8[..., None], 'mono8').shape == (5, 7)


def test_rgb_bgr_grey_keeps_value_and_channel_order_matters():
    g = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
    grey_rgb = np.repeat(g[..., None], 3, axis=2)
    for enc in ('rgb8', 'bgr8'):
        np.testing.assert_allclose(image_to_float(grey_rgb, enc), g / 255.0, atol=1e-6)
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 255
    assert image_to_float(red, 'rgb8')[0, 0] == pytest.approx(0.299, abs=1e-6)
    assert image_to_float(red, 'bgr8')[0, 0] == pytest.approx(0.114, abs=1e-6)


@pytest.mark.parametrize('data, enc, expected', [
    (np.zeros((3, 3), np.uint16), 'mono8', 'dtype uint16, expected uint8'),
    (np.zeros((3, 3, 3), np.uint8), 'mono8', 'expected (H, W)'),
    (np.zeros((3, 3), np.uint8), 'rgb8', 'expected (H, W, 3)'),
    (np.zeros((3, 3), np.uint8), '32FC1', 'expected float32'),
    (np.full((3, 3), np.nan, np.float32), '32FC1', 'NaN'),
    (np.zeros((3, 3), np.uint8), 'yuv422', "encoding 'yuv422' is not supported"),
])
def test_bad_images_are_named(data, enc, expected):
    with pytest.raises(EstimatorError, match=r'^frame 9: .*' + expected.replace('(', r'\(').replace(')', r'\)')):
        image_to_float(data, enc, name='frame 9')


def test_infer_encoding():
    assert infer_encoding(np.zeros((2, 2), np.uint8)) == 'mono8'
    assert infer_encoding(np.zeros((2, 2), np.uint16)) == 'mono16'
    assert infer_encoding(np.zeros((2, 2, 3), np.uint8)) == 'rgb8'
    assert infer_encoding(np.zeros((2, 2), np.float64)) == '32FC1'
    with pytest.raises(EstimatorError, match='cannot tell its encoding'):
        infer_encoding(np.zeros((2, 2), np.int32))


@pytest.mark.parametrize('enc, big', [('mono8', False), ('mono16', False), ('mono16', True), ('rgb8', False),
                                      ('32FC1', False)])
def test_decode_buffer_with_row_padding(enc, big):
    h, w = 5, 7
    if enc == '32FC1':
        arr = RNG.random((h, w)).astype(np.float32)
    elif enc == 'mono16':
        arr = RNG.integers(0, 65536, (h, w), dtype=np.uint16)
    else:
        arr = RNG.integers(0, 256, (h, w, 3) if enc == 'rgb8' else (h, w), dtype=np.uint8)
    raw = arr.astype(arr.dtype.newbyteorder('>' if big else '<'))
    rows = raw.reshape(h, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((h, 3), 0xAB, np.uint8)], axis=1)
    out = decode_buffer(padded.tobytes(), enc, h, w, padded.shape[1], is_bigendian=big)
    np.testing.assert_array_equal(out, arr)
    with pytest.raises(EstimatorError, match='expected height \\* step'):
        decode_buffer(padded.tobytes()[:-1], enc, h, w, padded.shape[1], is_bigendian=big)


# --- fan geometry ------------------------------------------------------------------------------

@pytest.mark.parametrize('h, w, deg', [(128, 128, 75.0), (64, 96, 60.0), (101, 80, 90.0)])
def test_model_fan_matches_the_simulator_sector(h, w, deg):
    for square in (False, True):
        sector = sector_mod.SectorGeometry(math.radians(deg), 150.0, h, w, square_pixels=square)
        fan = model_fan(h, w, math.radians(deg), square)
        np.testing.assert_array_equal(fan.mask((h, w)), sector.mask)
        x, z = fan.plane_coords((h, w))
        np.testing.assert_allclose(x * 150.0, sector.points[..., 0], atol=1e-9)
        np.testing.assert_allclose(z * 150.0, sector.points[..., 2], atol=1e-9)


@pytest.mark.parametrize('shape, fan', [
    ((200, 300), FanGeometry.square(10.3, 150.2, math.radians(75), 170.0)),
    ((240, 320), FanGeometry.square(-20.0, 160.0, math.radians(90), 200.0)),   # apex above the image
    ((128, 128), FanGeometry.square(0.0, 63.5, math.radians(60), 120.0)),
    ((480, 640), FanGeometry.square(40.0, 330.0, math.radians(80), 400.0)),
])
def test_detect_fan_recovers_geometry(shape, fan):
    img = np.where(fan.mask(shape), RNG.uniform(0.05, 1.0, shape), 0.0)
    x, z = fan.plane_coords(shape)
    img[(x ** 2 + (z - 0.5) ** 2) < 0.04] = 0.0       # a dark blood pool inside the fan
    img[(x - 0.1) ** 2 + (z - 0.85) ** 2 < 0.01] = 0.0  # and one near the far field
    found = detect_fan(img)
    assert found.apex_row == pytest.approx(fan.apex_row, abs=1.0)
    assert found.apex_col == pytest.approx(fan.apex_col, abs=1.0)
    assert math.degrees(found.angle_rad) == pytest.approx(math.degrees(fan.angle_rad), abs=1.0)
    assert found.depth_rows == pytest.approx(fan.depth_rows, abs=1.5)
    assert found.depth_cols == found.depth_rows


def test_detect_fan_with_a_cropped_near_field():
    """Scanners often blank the first centimetres: the fan then starts with an arc, not a point."""
    shape = (220, 300)
    fan = FanGeometry.square(-15.0, 151.0, math.radians(80), 230.0)
    x, z = fan.plane_coords(shape)
    img = np.where(fan.mask(shape) & (np.hypot(x, z) >= 0.15), RNG.uniform(0.05, 1.0, shape), 0.0)
    found = detect_fan(img)
    assert found.apex_row == pytest.approx(-15.0, abs=1.5)
    assert found.apex_col == pytest.approx(151.0, abs=1.0)
    assert math.degrees(found.angle_rad) == pytest.approx(80.0, abs=1.0)
    assert found.depth_rows == pytest.approx(230.0, rel=0.01)


def test_detect_fan_ignores_background_specks_and_uses_threshold():
    shape = (200, 260)
    fan = FanGeometry.square(5.0, 130.0, math.radians(70), 180.0)
    img = np.where(fan.mask(shape), RNG.uniform(0.2, 1.0, shape), RNG.uniform(0.0, 0.03, shape))
    img[190:196, 2:40] = 1.0                              # a text overlay in a corner
    found = detect_fan(img, threshold=0.05)
    assert found.apex_col == pytest.approx(130.0, abs=1.0)
    assert math.degrees(found.angle_rad) == pytest.approx(70.0, abs=1.0)


@pytest.mark.parametrize('img, expected', [
    (np.zeros((100, 100)), 'no sector fan found'),
    (np.pad(np.ones((60, 60)), 20), 'no sector fan found'),   # a square does not widen
])
def test_detect_fan_refuses_non_fans(img, expected):
    with pytest.raises(EstimatorError, match=expected):
        detect_fan(img, name='blank.png')


# --- resampling --------------------------------------------------------------------------------

def test_identity_mapping_is_exact():
    fan = model_fan(128, 128, math.radians(75))
    img = RNG.random((128, 128)).astype(np.float32)       # even values outside the fan survive
    out = map_to_model(img, fan, fan, (128, 128))
    np.testing.assert_array_equal(out, img)
    assert out.dtype == np.float32


def test_mapping_lands_the_input_fan_on_the_model_fan():
    dst = model_fan(96, 96, math.radians(75))
    dst_shape = (96, 96)
    expected = render(dst, dst_shape)
    src = FanGeometry.square(-12.0, 201.0, math.radians(75), 330.0)   # bigger, square pixels, cropped apex
    src_img = render(src, (340, 400))
    out = map_to_model(src_img, src, dst, dst_shape)
    inner = dst.mask(dst_shape, angle_rad=math.radians(70), radius=0.97) & (dst.plane_coords(dst_shape)[1] > 0.08)
    assert np.abs(out - expected)[inner].max() < 0.01
    assert np.all(out[~dst.mask(dst_shape)] == 0)


def test_wider_input_is_cropped_to_the_model_angle_and_narrower_stays_narrow():
    dst_shape = (80, 80)
    dst = model_fan(80, 80, math.radians(75))
    wide = FanGeometry.square(0.0, 99.5, math.radians(100), 150.0)
    out = map_to_model(render(wide, (160, 200)), wide, dst, dst_shape)
    assert np.all(out[~dst.mask(dst_shape)] == 0)
    assert (out[dst.mask(dst_shape, angle_rad=math.radians(70), radius=0.95)] > 0).all()
    narrow = FanGeometry.square(0.0, 99.5, math.radians(50), 150.0)
    out = map_to_model(render(narrow, (160, 200)), narrow, dst, dst_shape)
    assert np.all(out[~dst.mask(dst_shape, angle_rad=math.radians(50))] == 0)
    x, z = dst.plane_coords(dst_shape)
    assert (out[dst.mask(dst_shape, angle_rad=math.radians(45)) & (z > 0.1) & (z < 0.9)] > 0).all()


def test_physical_depth_mode_keeps_mm():
    dst_shape = (100, 100)
    dst = model_fan(100, 100, math.radians(75))
    src = FanGeometry.square(0.0, 79.5, math.radians(75), 150.0)
    src_img = render(src, (160, 160))
    out = map_to_model(src_img, src, dst, dst_shape, src_depth_mm=75.0, dst_depth_mm=150.0)
    x, z = dst.plane_coords(dst_shape)
    rho = np.hypot(x, z)
    assert np.all(out[rho > 0.5 + 1e-9] == 0)
    inside = dst.mask(dst_shape, angle_rad=math.radians(70), radius=0.48) & (z > 0.05)
    np.testing.assert_allclose(out[inside], field(2 * x, 2 * z)[inside], atol=0.02)


def test_detect_fan_on_simulator_slices_clipped_by_the_volume():
    """A 90 degree, 110 mm fan is wider than the 100 mm box it slices, off centre: its sides and
    far corners come out dark, unevenly, so only the top of each straight edge is visible."""
    from echoposed_ros.geometry import rot_x, rot_z
    rng = np.random.default_rng(3)
    data = (rng.random((1, 60, 50, 50)) * 0.9 + 0.1).astype(np.float32)
    data[:, 20:35, 10:25, 5:20] = 0.0                                       # a dark pool
    vol = volume_mod.Volume(data=data, spacing=np.full(3, 2.0), centre=np.array([34.0, 42.0, 59.0]), radius=45.0)
    h, w = 220, 260
    sector = sector_mod.SectorGeometry(math.radians(90), 110.0, h, w, square_pixels=True)
    truth = model_fan(h, w, math.radians(90), square_pixels=True)
    probes = rot_z(np.radians([0.0, 40.0, 100.0, 200.0])) @ rot_x(0.2)
    imgs = slicer.slice_batch(vol, np.broadcast_to(np.eye(3), probes.shape), probes, np.zeros(4), sector)
    for img in imgs:
        assert (img[truth.mask((h, w))] == 0).mean() > 0.05                  # really clipped
        found = detect_fan(img)
        assert found.apex_row == pytest.approx(truth.apex_row, abs=1.0)
        assert found.apex_col == pytest.approx(truth.apex_col, abs=1.0)
        assert math.degrees(found.angle_rad) == pytest.approx(90.0, abs=0.5)
        assert found.depth_rows == pytest.approx(truth.depth_rows, rel=0.02)
