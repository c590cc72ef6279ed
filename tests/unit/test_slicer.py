"""Sector geometry and the slicer (docs/method.md section 2): analytic volumes, mirroring, batching,
fast == reference."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from echoposed_sim.sector import SectorError, SectorGeometry
from echoposed_sim.slicer import (
    PreparedVolume,
    SlicerError,
    prepare_volume,
    slice_batch,
    slice_batch_reference,
    slice_volume,
)
from echoposed_sim.volume import Volume

RZ_PI = np.diag([-1.0, -1.0, 1.0])  # exact rotation by pi about z

# Every property holds for both memory layouts: the Volume itself and its bricked copy.
LAYOUTS = pytest.mark.parametrize('layout', [lambda v: v, prepare_volume], ids=['plain', 'bricked'])


def rot_z(a: float) -> np.ndarray:
    return Rotation.from_rotvec([0.0, 0.0, a]).as_matrix()


def near_base_poses(rng: np.random.Generator, n: int, orbit_deg: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Training-like poses: twist-free orbit within ``orbit_deg`` of identity, probe any turn about z plus tilts."""
    phi = rng.uniform(0, 2 * np.pi, n)
    axis = np.stack([np.cos(phi), np.sin(phi), np.zeros(n)], axis=1)
    orbits = Rotation.from_rotvec(axis * np.deg2rad(rng.uniform(0, orbit_deg, n))[:, None]).as_matrix()
    tilt = Rotation.from_euler('xy', rng.uniform(-0.35, 0.35, (n, 2))).as_matrix()
    turns = Rotation.from_rotvec(np.outer(rng.uniform(-np.pi, np.pi, n), [0.0, 0.0, 1.0])).as_matrix()
    return orbits, turns @ tilt


# ---------------------------------------------------------------------------------------------- sector

def test_sector_rows_columns_and_fan() -> None:
    s = SectorGeometry(angle_rad=np.deg2rad(60), depth_mm=100.0, height=51, width=40)
    assert s.z_mm[0] == 0.0 and s.z_mm[-1] == pytest.approx(100.0)
    assert np.all(np.diff(s.z_mm) > 0) and np.all(np.diff(s.x_mm) > 0)
    np.testing.assert_array_equal(s.x_mm, -s.x_mm[::-1])             # fliplr is exactly x -> -x
    assert s.x_mm[-1] == pytest.approx(100.0 * np.sin(np.deg2rad(30)))  # columns span the fan's width
    np.testing.assert_array_equal(s.mask, np.fliplr(s.mask))
    rho, phi = s.polar
    inside = (rho <= 100.0 + 1e-9) & (np.abs(phi) <= np.deg2rad(30) + 1e-9)
    np.testing.assert_array_equal(s.mask, inside)
    assert not s.mask[0].any()              # apex row: only the apex itself, absent for even W
    assert s.mask[-2, 20] and not s.mask[-1, 20] and not s.mask[-2, 0] and not s.mask[10, 0]  # round bottom
    assert s.points.shape == (51, 40, 3) and np.all(s.points[..., 1] == 0)
    np.testing.assert_array_equal(s.inside_index, np.flatnonzero(s.mask))


def test_sector_square_pixels_and_odd_width() -> None:
    s = SectorGeometry(angle_rad=np.deg2rad(90), depth_mm=80.0, height=64, width=65, square_pixels=True)
    row, col = s.pixel_mm
    assert row == col == pytest.approx(2 * 80.0 * np.sin(np.pi / 4) / 64)
    assert s.z_mm[-1] >= 80.0
    assert s.mask[0, 32] and s.mask[0].sum() == 1  # odd width: the apex pixel is in the fan
    assert s.x_mm[32] == 0.0


@pytest.mark.parametrize('kwargs', [dict(angle_rad=0.0), dict(angle_rad=np.pi), dict(depth_mm=-1.0),
                                    dict(depth_mm=np.nan), dict(height=1), dict(width=12.5)])
def test_sector_refuses_bad_parameters(kwargs) -> None:
    name = next(iter(kwargs))
    with pytest.raises(SectorError, match=name):
        SectorGeometry(**kwargs)


# ---------------------------------------------------------------------------------------------- analytic

SPACING = np.array([1.5, 1.0, 2.0])     # anisotropic on purpose
SHAPE_ZYX = (26, 40, 30)                # k, j, i: z spans 50 mm, y 39 mm, x 43.5 mm
FRAMES = 5


def multilinear(x, y, z, tau):
    """Multilinear in (x, y, z, tau), so trilinear-in-space x linear-in-time interpolation is exact."""
    X, Y, Z = (np.array(SHAPE_ZYX[::-1]) - 1) * SPACING
    a, b, c, d = x / X, y / Y, z / Z, tau / (FRAMES - 1)
    return 0.05 + 0.2 * a + 0.15 * b + 0.2 * c + 0.1 * a * b * c + 0.1 * d + 0.1 * d * a * (1 - c) + 0.05 * b * c


def analytic_volume(dtype=np.float32) -> Volume:
    k, j, i = np.meshgrid(*[np.arange(n) for n in SHAPE_ZYX], indexing='ij')
    frames = [multilinear(i * SPACING[0], j * SPACING[1], k * SPACING[2], f) for f in range(FRAMES)]
    data = np.stack(frames).astype(np.float32)
    centre = (np.array(SHAPE_ZYX[::-1]) - 1) * SPACING / 2
    return Volume(data=data, spacing=SPACING, centre=centre, radius=20.0, name='analytic')


SMALL = SectorGeometry(angle_rad=np.deg2rad(75), depth_mm=45.0, height=40, width=36)


def sample_points(volume, orbits, probes, sector, radius=None):
    """(N, H, W, 3) volume-frame points of every pixel, straight from docs/method.md section 2."""
    r = volume.radius if radius is None else radius
    out = []
    for R_v, R_p in zip(orbits, probes):
        o = volume.centre - r * R_v @ np.array([0.0, 0.0, 1.0])
        out.append(o + sector.points @ (R_v @ R_p).T)
    return np.stack(out)


def inside_box(volume, pts, margin=0.0):
    hi = volume.extent_mm
    return np.all((pts >= margin) & (pts <= hi - margin), axis=-1)


@LAYOUTS
def test_every_pixel_equals_the_analytic_function(layout) -> None:
    vol = analytic_volume()
    rng = np.random.default_rng(1)
    orbits, probes = near_base_poses(rng, 12)
    ts = rng.uniform(0, (FRAMES - 1) / FRAMES, 12)  # no wrap: tau = t * T is the frame coordinate
    got = slice_batch(layout(vol), orbits, probes, ts, SMALL)
    pts = sample_points(vol, orbits, probes, SMALL)
    want = multilinear(pts[..., 0], pts[..., 1], pts[..., 2], (ts * FRAMES)[:, None, None])
    inside = inside_box(vol, pts) & SMALL.mask
    assert inside.sum() > 0.5 * SMALL.mask.sum() * 12       # most of the fan sees the volume
    assert (~inside_box(vol, pts) & SMALL.mask).any()       # and some of it does not
    np.testing.assert_allclose(got[inside], want[inside], atol=2e-6)
    assert np.all(got[~inside] == 0.0)                       # outside the fan or the volume: 0


def test_phase_is_periodic_and_wraps_from_last_frame_to_first() -> None:
    vol = analytic_volume()
    eye = np.eye(3)[None].repeat(4, 0)
    ts = np.array([0.9, 0.95, 1.3, -0.2])                    # 0.9: between frame 4 and frame 0
    got = slice_batch(vol, eye, eye, ts, SMALL)
    pts = sample_points(vol, eye, eye, SMALL)
    inside = inside_box(vol, pts) & SMALL.mask
    x, y, z = pts[0, ..., 0], pts[0, ..., 1], pts[0, ..., 2]
    for n, w in [(0, 0.5), (1, 0.75)]:                       # weight of frame 0
        want = (1 - w) * multilinear(x, y, z, FRAMES - 1) + w * multilinear(x, y, z, 0)
        np.testing.assert_allclose(got[n][inside[n]], want[inside[n]], atol=2e-6)
    np.testing.assert_allclose(got[2], slice_volume(vol, eye[0], eye[0], 0.3, SMALL), atol=1e-7)
    np.testing.assert_allclose(got[3], slice_volume(vol, eye[0], eye[0], 0.8, SMALL), atol=1e-7)


def test_identity_pose_draws_the_beam_down_the_volume_z_axis() -> None:
    # row i, column j of the identity pose sample c - r e_z + (x_j, 0, z_i): a ramp in z shows as a ramp in rows
    zs = np.arange(SHAPE_ZYX[0]) * SPACING[2]
    data = np.broadcast_to((zs / zs[-1])[None, :, None, None], (1,) + SHAPE_ZYX).astype(np.float32).copy()
    vol = Volume(data=data, spacing=SPACING, centre=np.array([20.0, 19.5, 25.0]), radius=20.0)
    img = slice_volume(vol, np.eye(3), np.eye(3), 0.0, SMALL)
    col = SMALL.width // 2
    rows = np.flatnonzero(SMALL.mask[:, col])
    want = (25.0 - 20.0 + SMALL.z_mm[rows]) / zs[-1]
    ok = want <= 1.0
    np.testing.assert_allclose(img[rows[ok], col], want[ok], atol=1e-6)


@LAYOUTS
def test_constant_volume_is_zero_exactly_outside_the_volume(layout) -> None:
    data = np.full((2,) + SHAPE_ZYX, 0.7, dtype=np.float32)
    vol = Volume(data=data, spacing=SPACING, centre=(np.array(SHAPE_ZYX[::-1]) - 1) * SPACING / 2, radius=30.0)
    rng = np.random.default_rng(2)
    orbits, probes = near_base_poses(rng, 6, orbit_deg=40)
    got = slice_batch(layout(vol), orbits, probes, rng.random(6), SMALL)
    pts = sample_points(vol, orbits, probes, SMALL)
    clearly_in = inside_box(vol, pts, 1e-6) & SMALL.mask
    clearly_out = ~inside_box(vol, pts, -1e-6) | ~SMALL.mask
    assert clearly_in.any() and (clearly_out & SMALL.mask).any()
    np.testing.assert_allclose(got[clearly_in], 0.7, rtol=1e-6)
    assert np.all(got[clearly_out] == 0.0)
    # a probe far away from the volume sees nothing at all
    far = slice_volume(vol, np.eye(3), np.eye(3), 0.0, SMALL, radius=200.0)
    assert np.all(far == 0.0)


# ---------------------------------------------------------------------------------------------- identities

def random_volume(dtype, frames=4, shape=(47, 45, 41), seed=3) -> Volume:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (frames,) + shape, dtype=np.uint8)
    if dtype == np.float32:
        data = (data / 255.0).astype(np.float32)
    spacing = np.array([1.2, 1.0, 1.1])
    return Volume(data=data, spacing=spacing, centre=(np.array(shape[::-1]) - 1) * spacing / 2, radius=22.0,
                  name='random')


@LAYOUTS
@pytest.mark.parametrize('dtype', [np.uint8, np.float32])
def test_mirroring_is_a_turn_of_the_probe_by_pi(dtype, layout) -> None:
    vol = layout(random_volume(dtype))
    rng = np.random.default_rng(4)
    orbits, probes = near_base_poses(rng, 16)
    ts = rng.random(16)
    a = slice_batch(vol, orbits, probes, ts, SMALL)
    b = slice_batch(vol, orbits, probes @ RZ_PI, ts, SMALL)
    assert (a > 0).mean() > 0.3
    np.testing.assert_allclose(np.flip(a, axis=2), b, atol=1e-6)
    c = slice_batch(vol, orbits, probes @ rot_z(np.pi), ts, SMALL)  # a float Rz(pi): equal to rounding
    np.testing.assert_allclose(np.flip(a, axis=2), c, atol=1e-4)


def test_slice_depends_on_the_gauge_only_through_the_effective_pose() -> None:
    vol = random_volume(np.float32)
    rng = np.random.default_rng(5)
    orbits, probes = near_base_poses(rng, 8)
    twist = np.stack([rot_z(a) for a in rng.uniform(-np.pi, np.pi, 8)])
    ts = rng.random(8)
    a = slice_batch(vol, orbits, probes, ts, SMALL)
    b = slice_batch(vol, orbits @ twist, np.swapaxes(twist, 1, 2) @ probes, ts, SMALL)
    np.testing.assert_allclose(a, b, atol=1e-5)


@LAYOUTS
@pytest.mark.parametrize('dtype', [np.uint8, np.float32])
def test_fast_path_matches_numpy_reference(dtype, layout) -> None:
    vol = random_volume(dtype)
    rng = np.random.default_rng(6)
    orbits, probes = near_base_poses(rng, 10, orbit_deg=60)
    orbits[0] = Rotation.random(random_state=7).as_matrix()   # arbitrary poses too
    probes[1] = Rotation.random(random_state=8).as_matrix()
    ts = np.concatenate([rng.uniform(-2, 2, 9), [0.75]])
    fast = slice_batch(layout(vol), orbits, probes, ts, SMALL)
    ref = slice_batch_reference(vol, orbits, probes, ts, SMALL)
    assert fast.dtype == np.float32 and fast.shape == (10,) + SMALL.shape
    assert 0.0 <= fast.min() and fast.max() <= 1.0 and (fast > 0).mean() > 0.2
    np.testing.assert_allclose(fast, ref, atol=1e-6)


def test_batched_equals_single_and_out_buffer_is_overwritten() -> None:
    vol = prepare_volume(random_volume(np.uint8))
    rng = np.random.default_rng(9)
    orbits, probes = near_base_poses(rng, 5)
    ts = rng.random(5)
    out = np.full((5,) + SMALL.shape, 9.0, dtype=np.float32)
    batch = slice_batch(vol, orbits, probes, ts, SMALL, out=out)
    assert batch is out and not (out == 9.0).any()
    for n in range(5):
        np.testing.assert_array_equal(batch[n], slice_volume(vol, orbits[n], probes[n], ts[n], SMALL))


def test_default_sector_on_a_single_frame_volume() -> None:
    vol = random_volume(np.uint8, frames=1, shape=(80, 80, 80))
    a = slice_volume(vol, np.eye(3), rot_z(0.4), 0.0)
    b = slice_volume(vol, np.eye(3), rot_z(0.4), 0.63)          # one frame: time does not matter
    assert a.shape == (128, 128) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.all(a[~SectorGeometry().mask] == 0.0) and (a > 0).any()


def test_prepared_volume_is_a_bricked_copy_with_the_same_slices() -> None:
    vol = random_volume(np.uint8, frames=3, shape=(9, 6, 7))
    prepared = prepare_volume(vol)
    assert isinstance(prepared, PreparedVolume) and prepare_volume(prepared) is prepared
    assert prepared.bricks.size == 3 * 12 * 8 * 8 and prepared.bricks.dtype == np.uint8  # padded to 4^3 bricks
    it, jt, kt = (table.astype(np.int64) for table in prepared.tables)
    t, k, j, i = np.meshgrid(np.arange(3), np.arange(9), np.arange(6), np.arange(7), indexing='ij')
    np.testing.assert_array_equal(prepared.bricks[t * prepared.frame_stride + kt[k] + jt[j] + it[i]], vol.data)
    sector = SectorGeometry(depth_mm=12.0, height=20, width=20)
    orbits, probes = near_base_poses(np.random.default_rng(10), 6, orbit_deg=60)
    vol_small = Volume(data=vol.data, spacing=np.ones(3), centre=np.array([3.0, 2.5, 4.0]), radius=5.0)
    ts = np.linspace(0, 1, 6)
    np.testing.assert_array_equal(slice_batch(prepare_volume(vol_small), orbits, probes, ts, sector),
                                  slice_batch(vol_small, orbits, probes, ts, sector))


# ---------------------------------------------------------------------------------------------- refusals

def test_refuses_bad_poses_phases_and_buffers() -> None:
    vol = random_volume(np.float32, frames=1, shape=(8, 8, 8))
    eye = np.eye(3)[None].repeat(3, 0)
    bent = eye.copy()
    bent[2, 0, 0] = 1.1
    with pytest.raises(SlicerError, match=r'probes\[2\]: not a rotation'):
        slice_batch(vol, eye, bent, np.zeros(3), SMALL)
    nan = eye.copy()
    nan[1, 1, 1] = np.nan
    with pytest.raises(SlicerError, match=r'orbits\[1\]: contains NaN'):
        slice_batch(vol, nan, eye, np.zeros(3), SMALL)
    with pytest.raises(SlicerError, match='ts: contains NaN'):
        slice_batch(vol, eye, eye, np.array([0.0, np.inf, 0.0]), SMALL)
    with pytest.raises(SlicerError, match='ts: expected 3'):
        slice_batch(vol, eye, eye, np.zeros(2), SMALL)
    with pytest.raises(SlicerError, match='batch size'):
        slice_batch(vol, eye, eye[:2], np.zeros(3), SMALL)
    with pytest.raises(SlicerError, match='out: expected'):
        slice_batch(vol, eye, eye, np.zeros(3), SMALL, out=np.zeros((3, 5, 5), np.float32))
    with pytest.raises(SlicerError, match='orbit and probe'):
        slice_volume(vol, eye, eye, 0.0, SMALL)


def test_bench_command_writes_the_figures(tmp_path) -> None:
    import json

    from echoposed_ros.cli import main
    out = tmp_path / 'bench' / 'slicer.json'
    rc = main(['bench', 'slicer', '--size', '40', '--frames', '2', '--batch', '6', '--repeats', '1',
               '--scipy-slices', '3', '--json', str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result['target'] == 'slicer'
    assert result['slices_per_s'] > 0 and result['scipy_slices_per_s'] > 0
    assert result['ratio'] == pytest.approx(result['slices_per_s'] / result['scipy_slices_per_s'], rel=0.01, abs=2e-3)
    assert result['max_abs_diff_vs_scipy'] < 1e-5 and result['plain_layout_equal']   # same points, same values
    assert result['machine']['cpus'] >= 1 and result['config']['volume_shape_tzyx'] == [2, 40, 40, 40]
    met = result['slices_per_s'] >= 1000 and result['ratio'] >= 5
    assert result['targets_met'] == met
    rc = main(['bench', 'slicer', '--size', '40', '--frames', '2', '--batch', '6', '--repeats', '1',
               '--scipy-slices', '3', '--check', '--json', str(out)])
    assert rc == (0 if json.loads(out.read_text())['targets_met'] else 1)


def _slice_in_child(queue, vol, orbits, probes, ts) -> None:
    queue.put(slice_batch(vol, orbits, probes, ts))


def test_a_forked_child_slices_after_the_parent_ran_parallel() -> None:
    # numba's OpenMP layer terminates a fork()ed child that opens a parallel region; the slicer must not
    import multiprocessing as mp
    vol = random_volume(np.uint8, frames=2, shape=(40, 40, 40))
    n = 16                                                    # above the parallel threshold
    orbits, probes = near_base_poses(np.random.default_rng(11), n)
    ts = np.linspace(0, 1, n, endpoint=False)
    parent = slice_batch(vol, orbits, probes, ts)
    ctx = mp.get_context('fork')
    queue = ctx.Queue()
    child = ctx.Process(target=_slice_in_child, args=(queue, vol, orbits, probes, ts))
    child.start()
    got = queue.get(timeout=60)
    child.join(10)
    assert child.exitcode == 0
    np.testing.assert_array_equal(got, parent)
