"""Volume files: real tiny NIfTI / MetaImage / npz / npy files, axis order, spacing, geometry, refusals."""
from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from scipy.spatial.transform import Rotation

from echoposed_sim.slicer import slice_volume
from echoposed_sim.volume import StandardView, Volume, VolumeError
from echoposed_sim.volume_io import load_volume, save_volume, sidecar_path

SPACING = np.array([0.5, 0.7, 0.9])  # x, y, z: all different
T, Z, Y, X = 3, 6, 5, 4              # all different


def asymmetric(frames: int = T, dtype=np.uint8) -> np.ndarray:
    """(T, Z, Y, X) with a distinct value per voxel: 1 + i + 4 j + 20 k + 120 t (uint8-safe for t < 2)."""
    t, k, j, i = np.meshgrid(np.arange(frames), np.arange(Z), np.arange(Y), np.arange(X), indexing='ij')
    return ((1 + i + 4 * j + 20 * k + 60 * t) % 256).astype(dtype)


def write_nifti(path, tzyx: np.ndarray, spacing=SPACING, dt=None, space='mm', time='sec'):
    array = np.transpose(tzyx if tzyx.shape[0] > 1 else tzyx[0])  # (X, Y, Z[, T])
    img = nib.Nifti1Image(array, np.diag(list(spacing) + [1.0]))
    img.header.set_xyzt_units(space, time)
    img.header.set_zooms(list(spacing) + ([dt] if array.ndim == 4 else []))
    nib.save(img, str(path))
    return path


def write_metaimage(path, tzyx: np.ndarray, spacing=SPACING):
    array = tzyx if tzyx.shape[0] > 1 else tzyx[0]
    img = sitk.GetImageFromArray(array, isVector=False)
    img.SetSpacing(tuple(spacing) + ((0.04,) if array.ndim == 4 else ()))
    sitk.WriteImage(img, str(path))
    return path


# ---------------------------------------------------------------------------------------------- formats

@pytest.mark.parametrize('suffix', ['.nii', '.nii.gz', '.mha', '.mhd', '.npz', '.npy'])
@pytest.mark.parametrize('frames', [1, T])
def test_every_format_keeps_axis_order_spacing_and_values(tmp_path, suffix, frames) -> None:
    want = asymmetric(frames)
    path = tmp_path / f'vol{suffix}'
    kwargs = {}
    if suffix in ('.nii', '.nii.gz'):
        write_nifti(path, want, dt=0.05)
    elif suffix in ('.mha', '.mhd'):
        write_metaimage(path, want)
    elif suffix == '.npz':
        np.savez(path, data=want if frames > 1 else want[0], spacing=SPACING)
    else:
        np.save(path, want)
        kwargs['spacing'] = SPACING
    vol = load_volume(path, **kwargs)
    assert vol.data.dtype == np.uint8 and vol.data.shape == (frames, Z, Y, X)
    np.testing.assert_array_equal(vol.data, want)       # uint8 is kept as is: exact, axes the right way round
    assert vol.data[0, 0, 0, 3] == 4 and vol.data[0, 0, 1, 0] == 5 and vol.data[0, 1, 0, 0] == 21
    np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-6)
    assert vol.name == str(path) and vol.meta['file']['path'] == str(path)
    if suffix in ('.nii', '.nii.gz') and frames > 1:
        assert vol.cycle_s == pytest.approx(0.05 * T)   # frame interval x frames: one cycle
    else:
        assert vol.cycle_s == 1.0


def test_nifti_units_and_frames_per_cycle(tmp_path) -> None:
    path = write_nifti(tmp_path / 'm.nii.gz', asymmetric(), spacing=[0.0005, 0.0007, 0.0009], dt=40.0,
                       space='meter', time='msec')
    vol = load_volume(path)
    np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-5)
    assert vol.cycle_s == pytest.approx(0.12)
    two = load_volume(path, frames_per_cycle=2)             # the file holds more than one cycle
    assert two.frames == 2 and two.cycle_s == pytest.approx(0.08)
    np.testing.assert_array_equal(two.data, asymmetric()[:2])
    assert two.meta['file']['frames_in_file'] == 3
    with pytest.raises(VolumeError, match=r'm\.nii\.gz: frames_per_cycle must be an integer in \[1, 3\]'):
        load_volume(path, frames_per_cycle=4)


# ---------------------------------------------------------------------------------------------- intensity

def test_integer_data_is_scaled_by_robust_percentiles_to_uint8(tmp_path) -> None:
    rng = np.random.default_rng(0)
    raw = rng.integers(-1000, 3000, (2, 8, 8, 8)).astype(np.int16)
    raw[0, 0, 0, 0] = 32000                                   # one outlier must not squash the range
    np.save(tmp_path / 'ct.npy', raw)
    vol = load_volume(tmp_path / 'ct.npy', spacing=[1, 1, 1])
    assert vol.data.dtype == np.uint8 and vol.data.min() == 0 and vol.data.max() == 255
    lo, hi = np.percentile(raw, [0.5, 99.5])
    want = np.rint(np.clip((raw.astype(np.float32) - lo) / (hi - lo), 0, 1) * 255)
    assert np.abs(vol.data.astype(int) - want).max() <= 1
    assert np.median(vol.data) > 100                          # the outlier did not compress everything
    info = vol.meta['file']['intensity']
    assert info['method'] == 'percentile' and info['lo'] == pytest.approx(lo, rel=1e-3)


def test_float_data_outside_unit_range_becomes_float32_in_unit_range(tmp_path) -> None:
    raw = np.linspace(-5.0, 20.0, 4 * 5 * 6).reshape(4, 5, 6)
    np.savez(tmp_path / 'f.npz', data=raw, spacing=[1.0, 1.0, 1.0])
    vol = load_volume(tmp_path / 'f.npz', normalise='minmax')
    assert vol.data.dtype == np.float32
    np.testing.assert_allclose(vol.data[0], (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)
    unit = np.random.default_rng(1).random((4, 5, 6)).astype(np.float32)
    np.savez(tmp_path / 'u.npz', data=unit, spacing=[1.0, 1.0, 1.0])
    np.testing.assert_array_equal(load_volume(tmp_path / 'u.npz').data[0], unit)   # already [0, 1]: kept
    assert load_volume(tmp_path / 'u.npz', dtype='uint8').data.dtype == np.uint8


# ---------------------------------------------------------------------------------------------- geometry

def apex_of(vol: Volume) -> np.ndarray:
    return vol.centre - vol.radius * vol.base_orbit[:, 2]


def test_default_geometry_is_the_probe_on_the_top_face_looking_at_the_centre(tmp_path) -> None:
    np.savez(tmp_path / 'v.npz', data=asymmetric(), spacing=SPACING)
    vol = load_volume(tmp_path / 'v.npz')
    extent = (np.array([X, Y, Z]) - 1) * SPACING
    np.testing.assert_allclose(vol.centre, extent / 2)
    np.testing.assert_allclose(vol.base_orbit, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(vol.base_probe, np.eye(3), atol=1e-12)
    assert vol.radius == pytest.approx(extent[2] / 2)
    np.testing.assert_allclose(apex_of(vol), [extent[0] / 2, extent[1] / 2, 0.0], atol=1e-12)
    # an off-axis centre: the probe stays at the top face centre and turns to look at it
    off = load_volume(tmp_path / 'v.npz', centre=[0.5, 1.0, 3.0])
    np.testing.assert_allclose(apex_of(off), [extent[0] / 2, extent[1] / 2, 0.0], atol=1e-12)
    assert np.linalg.norm(off.base_orbit[:, 2] - [0, 0, 1]) > 0.1


def test_sidecar_overrides_the_file_and_arguments_override_the_sidecar(tmp_path) -> None:
    path = tmp_path / 'v.npy'
    np.save(path, asymmetric())
    turn = Rotation.from_rotvec([0.0, 0.0, 0.4]).as_matrix()
    sidecar_path(path).write_text(yaml.safe_dump({
        'spacing': [1.0, 2.0, 3.0], 'apex': [1.5, 4.0, -10.0], 'centre': [1.5, 4.0, 7.5], 'base_probe': turn.tolist(),
        'cycle_s': 0.8, 'name': 'patient 7',
        'views': {'A4C': {'orbit': np.eye(3).tolist(), 'probe': turn.tolist()}}}))
    vol = load_volume(path)
    np.testing.assert_array_equal(vol.spacing, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(apex_of(vol), [1.5, 4.0, -10.0], atol=1e-12)
    assert vol.radius == pytest.approx(17.5) and vol.cycle_s == 0.8 and vol.name == 'patient 7'
    np.testing.assert_allclose(vol.base_probe, turn)
    assert set(vol.views) == {'A4C'} and isinstance(vol.views['A4C'], StandardView)
    argued = load_volume(path, spacing=[2.0, 2.0, 2.0], cycle_s=1.2, name='x')
    assert argued.cycle_s == 1.2 and argued.name == 'x'
    np.testing.assert_array_equal(argued.spacing, [2.0, 2.0, 2.0])
    assert load_volume(path, sidecar=False, spacing=SPACING).cycle_s == 1.0


def test_a_twisted_base_orbit_is_stored_in_the_canonical_gauge(tmp_path) -> None:
    np.savez(tmp_path / 'v.npz', data=asymmetric(), spacing=SPACING)
    twisted = Rotation.from_rotvec([0.2, 0.0, 0.0]).as_matrix() @ Rotation.from_rotvec([0, 0, 0.7]).as_matrix()
    vol = load_volume(tmp_path / 'v.npz', base_orbit=twisted)
    np.testing.assert_allclose(vol.base_orbit @ vol.base_probe, twisted, atol=1e-12)   # same probe pose
    np.testing.assert_allclose(vol.base_orbit[:, 2], twisted[:, 2], atol=1e-12)
    swing_twist_free = Rotation.from_matrix(vol.base_orbit).as_rotvec()
    assert abs(swing_twist_free[2]) < 1e-12


# ---------------------------------------------------------------------------------------------- round trip

def phantom_like(dtype=np.uint8) -> Volume:
    rng = np.random.default_rng(2)
    data = rng.integers(0, 256, (4, 10, 9, 8), dtype=np.uint8)
    if dtype == np.float32:
        data = (data / 255).astype(np.float32)
    orbit = Rotation.from_rotvec([0.1, -0.2, 0.0]).as_matrix()
    views = {name: StandardView(Rotation.from_rotvec([0.05 * n, 0.0, 0.0]).as_matrix(),
                                Rotation.from_rotvec([0.0, 0.0, 0.3 * n]).as_matrix())
             for n, name in enumerate(['A4C', 'A2C', 'A3C'])}
    return Volume(data=data, spacing=np.array([0.8, 0.8, 0.8]), centre=np.array([3.0, 3.5, 4.0]), radius=3.5,
                  base_orbit=orbit, base_probe=Rotation.from_rotvec([0, 0, 0.5]).as_matrix(), cycle_s=0.85,
                  views=views, name='phantom:7', meta={'seed': 7, 'style': {'gain_db': 3.0}})


def assert_same_volume(a: Volume, b: Volume, meta: bool = True) -> None:
    assert a.data.dtype == b.data.dtype
    np.testing.assert_array_equal(a.data, b.data)
    for field in ('spacing', 'centre', 'base_orbit', 'base_probe'):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-6, atol=1e-7, err_msg=field)
    assert a.radius == pytest.approx(b.radius) and a.cycle_s == pytest.approx(b.cycle_s) and a.name == b.name
    assert set(a.views) == set(b.views)
    for key in a.views:
        np.testing.assert_allclose(a.views[key].orbit, b.views[key].orbit, atol=1e-12)
        np.testing.assert_allclose(a.views[key].probe, b.views[key].probe, atol=1e-12)
    if meta:
        assert {k: v for k, v in b.meta.items() if k != 'file'} == a.meta


@pytest.mark.parametrize('dtype', [np.uint8, np.float32])
@pytest.mark.parametrize('suffix', ['.npz', '.nii.gz', '.nii'])
def test_save_then_load_gives_the_same_volume(tmp_path, suffix, dtype) -> None:
    vol = phantom_like(dtype)
    path = save_volume(vol, tmp_path / f'p{suffix}')
    back = load_volume(path)
    assert_same_volume(vol, back, meta=suffix == '.npz')
    np.testing.assert_array_equal(slice_volume(back, np.eye(3), np.eye(3), 0.3),
                                  slice_volume(vol, np.eye(3), np.eye(3), 0.3))
    if suffix == '.npz':
        compressed = save_volume(vol, tmp_path / 'c.npz', compress=True)
        assert_same_volume(vol, load_volume(compressed))


# ---------------------------------------------------------------------------------------------- refusals

def test_refuses_2d_data(tmp_path) -> None:
    np.save(tmp_path / 'flat.npy', np.zeros((16, 16), np.uint8))
    with pytest.raises(VolumeError, match=r'flat\.npy: 2D data \(shape \(16, 16\)\)'):
        load_volume(tmp_path / 'flat.npy', spacing=[1, 1, 1])
    img = nib.Nifti1Image(np.zeros((16, 16, 1, 5), np.uint8), np.eye(4))   # 2D+t
    nib.save(img, str(tmp_path / 'cine.nii.gz'))
    with pytest.raises(VolumeError, match=r'cine\.nii\.gz: 2D data'):
        load_volume(tmp_path / 'cine.nii.gz')
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((16, 16), np.uint8)), str(tmp_path / 'flat.mha'))
    with pytest.raises(VolumeError, match=r'flat\.mha: 2D data'):
        load_volume(tmp_path / 'flat.mha')


def test_refuses_nan(tmp_path) -> None:
    data = np.zeros((4, 5, 6), np.float32)
    data[1, 2, 3] = np.nan
    np.savez(tmp_path / 'nan.npz', data=data, spacing=[1, 1, 1])
    with pytest.raises(VolumeError, match=r'nan\.npz: data holds 1 NaN or infinite value'):
        load_volume(tmp_path / 'nan.npz')
    write_nifti(tmp_path / 'nan.nii', data[None])
    with pytest.raises(VolumeError, match=r'nan\.nii: data holds 1 NaN'):
        load_volume(tmp_path / 'nan.nii')


@pytest.mark.parametrize('bad', [[0.0, 1.0, 1.0], [1.0, -0.5, 1.0], [1.0, 1.0, np.nan]])
def test_refuses_zero_negative_or_nan_spacing(tmp_path, bad) -> None:
    np.savez(tmp_path / 's.npz', data=asymmetric(), spacing=bad)
    with pytest.raises(VolumeError, match=r's\.npz: spacing must be'):
        load_volume(tmp_path / 's.npz')
    img = nib.Nifti1Image(np.transpose(asymmetric()[0]), np.eye(4))
    img.header['pixdim'][1:4] = bad
    nib.save(img, str(tmp_path / 's.nii'))
    with pytest.raises(VolumeError, match=r's\.nii: voxel spacing .* must be positive'):
        load_volume(tmp_path / 's.nii')
    mhd = write_metaimage(tmp_path / 's.mhd', asymmetric()[:1])
    text, count = re.subn(r'ElementSpacing = .*', 'ElementSpacing = ' + ' '.join(map(str, bad)), mhd.read_text())
    assert count == 1
    mhd.write_text(text)
    with pytest.raises(VolumeError, match=r's\.mhd: voxel spacing .* must be positive'):
        load_volume(mhd)


def test_refuses_unsupported_dtypes_suffixes_and_missing_files(tmp_path) -> None:
    np.save(tmp_path / 'c.npy', np.zeros((4, 5, 6), np.complex64))
    with pytest.raises(VolumeError, match=r'c\.npy: unsupported data type complex64'):
        load_volume(tmp_path / 'c.npy', spacing=[1, 1, 1])
    np.save(tmp_path / 'b.npy', np.zeros((4, 5, 6), bool))
    with pytest.raises(VolumeError, match=r'b\.npy: unsupported data type bool'):
        load_volume(tmp_path / 'b.npy', spacing=[1, 1, 1])
    rgb = sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / 'rgb.mha'))
    with pytest.raises(VolumeError, match=r'rgb\.mha: unsupported pixel type .* 3 components'):
        load_volume(tmp_path / 'rgb.mha')
    (tmp_path / 'v.dcm').write_bytes(b'x')
    with pytest.raises(VolumeError, match=r"v\.dcm: unsupported volume file type '\.dcm'"):
        load_volume(tmp_path / 'v.dcm')
    with pytest.raises(VolumeError, match=r'gone\.nii\.gz: no such volume file'):
        load_volume(tmp_path / 'gone.nii.gz')
    (tmp_path / 'broken.nii.gz').write_bytes(b'not a nifti at all')
    with pytest.raises(VolumeError, match=r'broken\.nii\.gz: cannot read it'):
        load_volume(tmp_path / 'broken.nii.gz')
    np.savez(tmp_path / 'nodata.npz', volume=np.zeros((4, 5, 6)))
    with pytest.raises(VolumeError, match=r'nodata\.npz: \.npz needs a field "data"'):
        load_volume(tmp_path / 'nodata.npz')


def test_npy_without_spacing_says_where_to_put_it(tmp_path) -> None:
    np.save(tmp_path / 'bare.npy', asymmetric())
    with pytest.raises(VolumeError, match=r'bare\.npy: \.npy holds no voxel spacing; pass spacing=.*bare\.npy\.yaml'):
        load_volume(tmp_path / 'bare.npy')
    sidecar_path(tmp_path / 'bare.npy').write_text('spacing: [0.5, 0.7, 0.9]\n')
    np.testing.assert_array_equal(load_volume(tmp_path / 'bare.npy').spacing, SPACING)


def test_refuses_bad_sidecars_and_geometry(tmp_path) -> None:
    path = tmp_path / 'v.npz'
    np.savez(path, data=asymmetric(), spacing=SPACING)
    sidecar_path(path).write_text('spacings: [1, 1, 1]\n')
    with pytest.raises(VolumeError, match=r"v\.npz\.yaml: unknown sidecar key\(s\) \['spacings'\]"):
        load_volume(path)
    sidecar_path(path).write_text('apex: [0, 0, 0]\nradius: 5\n')
    with pytest.raises(VolumeError, match=r'v\.npz: give either apex or radius/base_orbit'):
        load_volume(path)
    sidecar_path(path).unlink()
    with pytest.raises(VolumeError, match=r'v\.npz: base_orbit is not a rotation'):
        load_volume(path, base_orbit=np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(VolumeError, match=r'v\.npz: radius must be positive'):
        load_volume(path, radius=-3.0)
    with pytest.raises(VolumeError, match=r'v\.npz: normalise must be one of'):
        load_volume(path, normalise='zscore')
    with pytest.raises(VolumeError, match=r'v\.npz: intensities are constant'):
        np.savez(path, data=np.full((4, 5, 6), 7, np.int16), spacing=SPACING)
        load_volume(path)
    with pytest.raises(VolumeError, match=r'save_volume writes \.npz, \.nii or \.nii\.gz'):
        save_volume(phantom_like(), tmp_path / 'p.mha')


# ---------------------------------------------------------------------------------------------- orientation
# The same heart written with its voxel axes permuted and flipped (file axis i = world -z, j = +x, k = +y)
# and the matching affine / direction: it must load exactly as the canonical (identity) file does.

def permuted_xyz(tzyx: np.ndarray) -> np.ndarray:
    """(T, Z, Y, X) -> file order (i, j, k[, T]) = (-z, +x, +y[, t])."""
    xyz = np.transpose(tzyx if tzyx.shape[0] > 1 else tzyx[0])      # (X, Y, Z[, T])
    return np.ascontiguousarray(np.moveaxis(xyz, 2, 0)[::-1])      # (Z reversed, X, Y[, T])


#: columns: the world direction of file axes i, j, k (unit vectors)
PERMUTED = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])
PERMUTED_SPACING = SPACING[[2, 0, 1]]                             # along i, j, k


def write_oriented_nifti(path, tzyx, *, form='sform', scale=1.0, space='mm', linear=PERMUTED):
    array = permuted_xyz(tzyx)
    affine = np.eye(4)
    affine[:3, :3] = linear * PERMUTED_SPACING * scale
    affine[:3, 3] = [0.0, 0.0, (Z - 1) * SPACING[2] * scale]
    img = nib.Nifti1Image(array, None)
    if form in ('sform', 'both'):
        img.header.set_sform(affine, code='scanner')
    if form in ('qform', 'both'):
        img.header.set_qform(affine, code='scanner')
    img.header.set_xyzt_units(space, 'sec')
    img.header.set_zooms(list(PERMUTED_SPACING * scale) + ([0.05] if array.ndim == 4 else []))
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize('form', ['sform', 'qform', 'both'])
@pytest.mark.parametrize('frames', [1, T])
def test_nifti_axes_permuted_and_flipped_in_metres_load_as_the_canonical_file(tmp_path, form, frames) -> None:
    want = asymmetric(frames)
    canonical = load_volume(write_nifti(tmp_path / 'c.nii', want, dt=0.05))
    vol = load_volume(write_oriented_nifti(tmp_path / 'p.nii.gz', want, form=form, scale=1e-3, space='meter'))
    assert vol.data.shape == (frames, Z, Y, X)
    np.testing.assert_array_equal(vol.data, canonical.data)
    np.testing.assert_array_equal(vol.data, want)
    np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-6)
    np.testing.assert_allclose(vol.centre, canonical.centre, rtol=1e-6)
    assert vol.radius == pytest.approx(canonical.radius) and vol.cycle_s == pytest.approx(canonical.cycle_s)
    assert vol.meta['file']['orientation']['axes'] == ['+j', '+k', '-i']
    notes = ' | '.join(vol.meta['file']['notes'])
    assert f'NIfTI {"qform" if form == "qform" else "sform"}' in notes
    assert 'the beam (+z) is file axis -i' in notes and 'in m, converted to mm' in notes
    assert 'kept as stored' in ' | '.join(canonical.meta['file']['notes'])


@pytest.mark.parametrize('frames', [1, T])
def test_metaimage_direction_permuted_and_flipped_loads_as_the_canonical_file(tmp_path, frames) -> None:
    want = asymmetric(frames)
    canonical = load_volume(write_metaimage(tmp_path / 'c.mha', want))
    array = permuted_xyz(want)                                     # (i, j, k[, t])
    img = sitk.GetImageFromArray(np.transpose(array), isVector=False)  # sitk takes the reversed order
    direction = np.eye(array.ndim)
    direction[:3, :3] = PERMUTED
    img.SetDirection(tuple(direction.reshape(-1)))
    img.SetSpacing(tuple(PERMUTED_SPACING) + ((0.04,) if array.ndim == 4 else ()))
    sitk.WriteImage(img, str(tmp_path / 'p.mhd'))
    vol = load_volume(tmp_path / 'p.mhd')
    np.testing.assert_array_equal(vol.data, canonical.data)
    np.testing.assert_array_equal(vol.data, want)
    np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-6)
    assert vol.meta['file']['orientation']['axes'] == ['+j', '+k', '-i']
    notes = ' | '.join(vol.meta['file']['notes'])
    assert 'MetaImage direction' in notes and 'which gives no unit: read as mm' in notes
    assert 'direction is the identity' in ' | '.join(canonical.meta['file']['notes'])


def test_without_orientation_or_with_orientation_voxel_the_grid_is_taken_as_stored(tmp_path) -> None:
    want = asymmetric(1)
    path = write_oriented_nifti(tmp_path / 'p.nii', want, form='none')   # qform_code = sform_code = 0
    vol = load_volume(path)
    np.testing.assert_array_equal(vol.data[0], np.transpose(permuted_xyz(want)))  # as stored, as before
    np.testing.assert_allclose(vol.spacing, PERMUTED_SPACING, rtol=1e-6)
    assert 'orientation: none in the file' in vol.meta['file']['notes'][0]
    oriented = write_oriented_nifti(tmp_path / 'o.nii', want)
    sidecar_path(oriented).write_text('orientation: voxel\n')
    stored = load_volume(oriented)
    np.testing.assert_array_equal(stored.data, vol.data)
    assert 'is not applied (orientation: voxel)' in stored.meta['file']['notes'][0]
    np.testing.assert_array_equal(load_volume(oriented, orientation='file').data, want)   # the argument wins
    with pytest.raises(VolumeError, match=r"o\.nii: orientation must be one of \['file', 'voxel'\], got 'ras'"):
        load_volume(oriented, orientation='ras')


def test_oblique_axes_are_taken_along_the_nearest_and_said_so(tmp_path) -> None:
    tilt = Rotation.from_rotvec([0.0, np.radians(4.0), 0.0]).as_matrix()
    vol = load_volume(write_oriented_nifti(tmp_path / 'p.nii', asymmetric(1), linear=tilt @ PERMUTED))
    np.testing.assert_array_equal(vol.data, asymmetric(1))
    assert re.search(r'oblique, up to 4\.00 deg off the world axes', ' | '.join(vol.meta['file']['notes']))


def test_a_spacing_without_unit_that_can_only_be_metres_is_refused(tmp_path) -> None:
    path = write_nifti(tmp_path / 'u.nii', asymmetric(1), spacing=SPACING * 1e-3, space='unknown')
    with pytest.raises(VolumeError, match=r'u\.nii: voxel spacing .* has no unit in the file and, read as mm, makes '
                                          r'the volume 0\.0045 mm wide \(metres\?\).*u\.nii\.yaml'):
        load_volume(path)
    sidecar_path(path).write_text('spacing: [0.5, 0.7, 0.9]\n')
    vol = load_volume(path)
    np.testing.assert_array_equal(vol.spacing, SPACING)
    assert 'spacing: from the sidecar (mm)' in vol.meta['file']['notes']
    plain = write_nifti(tmp_path / 'plain.nii', asymmetric(1), space='unknown')
    assert 'spacing: from the file, which gives no unit: read as mm' in load_volume(plain).meta['file']['notes']


def test_notes_say_where_the_centre_apex_beam_and_cycle_come_from(tmp_path) -> None:
    from echoposed_sim.volume_io import volume_notes
    vol = load_volume(write_nifti(tmp_path / 'v.nii', asymmetric(), dt=0.05))
    notes = volume_notes(vol)
    assert notes[0].startswith('orientation: ') and notes[1] == 'spacing: from the file, in mm'
    assert any(n.startswith('centre: ') and 'the grid centre (default)' in n for n in notes)
    apex = next(n for n in notes if n.startswith('apex: '))
    assert 'the centre of the top face z = 0 (default)' in apex and 'beam to the centre [0.000, 0.000, 1.000]' in apex
    assert 'cycle: 0.15 s for 3 frame(s), from the file (frame interval x frames)' in notes
    assert notes[-1].startswith('intensity: uint8 taken as it is')
    np.save(tmp_path / 'b.npy', asymmetric(1).astype(np.float32) * 10)
    sidecar_path(tmp_path / 'b.npy').write_text('spacing: [1, 1, 1]\napex: [1.5, 2.0, -5.0]\n')
    bare = volume_notes(load_volume(tmp_path / 'b.npy'))
    assert any('apex: [1.5, 2.0, -5.0] mm, from the sidecar' in n for n in bare)
    assert not any(n.startswith('cycle') for n in bare)                 # one static frame: no cycle to assume
    assert 'percentiles' in bare[-1]
    assert volume_notes(Volume(data=np.zeros((1, 2, 2, 2), np.uint8), spacing=np.ones(3), centre=np.ones(3),
                               radius=1.0)) == []


# ---------------------------------------------------------------------------------------------- echoposed volume

def test_volume_info_prints_geometry_and_notes_and_writes_json(tmp_path, capsys) -> None:
    import json

    from echoposed_ros.cli import main
    path = write_oriented_nifti(tmp_path / 'p.nii.gz', asymmetric(), scale=1e-3, space='meter')
    rc = main(['volume', 'info', str(path), '--json', str(tmp_path / 'info.json')])
    out = capsys.readouterr().out
    assert rc == 0
    assert f'shape: {T} x {Z} x {Y} x {X} (T, Z, Y, X), uint8' in out
    assert 'spacing: [0.5000, 0.7000, 0.9000] mm' in out and 'the beam (+z) is file axis -i' in out
    assert 'central beam (R e_z) [0.000, 0.000, 1.000]' in out and 'in m, converted to mm' in out
    doc = json.loads((tmp_path / 'info.json').read_text())
    assert doc['shape_tzyx'] == [T, Z, Y, X] and doc['orientation']['axes'] == ['+j', '+k', '-i']
    np.testing.assert_allclose(doc['apex_mm'], [1.5 * 0.5, 2 * 0.7, 0.0])
    capsys.readouterr()
    assert main(['volume', 'info', str(path), '--orientation', 'voxel']) == 0
    assert 'is not applied (orientation: voxel)' in capsys.readouterr().out


def test_volume_preview_writes_a_picture_of_the_expected_size(tmp_path, capsys) -> None:
    from PIL import Image

    from echoposed_ros.cli import main
    from echoposed_sim.volume_preview import PREVIEW_DPI, PREVIEW_SIZE_IN
    z, y, x = np.mgrid[0:24, 0:20, 0:20]
    blob = np.exp(-(((x - 10) / 5.0) ** 2 + ((y - 10) / 4.0) ** 2 + ((z - 14) / 7.0) ** 2)).astype(np.float32)
    np.savez(tmp_path / 'blob.npz', data=blob, spacing=[5.0, 5.0, 6.0])
    out = tmp_path / 'pics' / 'blob.png'
    rc = main(['volume', 'preview', str(tmp_path / 'blob.npz'), '--out', str(out), '--phase', '0.5'])
    printed = capsys.readouterr().out
    assert rc == 0 and f'wrote {out}' in printed and 'notes:' in printed
    with Image.open(out) as img:
        assert img.format == 'PNG'
        assert img.size == (round(PREVIEW_SIZE_IN[0] * PREVIEW_DPI), round(PREVIEW_SIZE_IN[1] * PREVIEW_DPI))
        pixels = np.asarray(img.convert('L'), dtype=np.float64)
    assert pixels.std() > 20                                   # a picture, not a blank page


@pytest.mark.parametrize('make, expected', [
    (lambda d: d / 'missing.nii', 'no such volume file'),
    (lambda d: (d / 'bad.nii').write_bytes(b'not a nifti file at all') and d / 'bad.nii', 'cannot read it as .nii'),
    (lambda d: (d / 'heart.nii.gz.yaml').write_text('x: 1\n') and d / 'heart.nii.gz.yaml',
     "unsupported volume file type '.yaml'"),
])
@pytest.mark.parametrize('action', ['info', 'preview'])
def test_volume_command_bad_file_is_one_line_and_exit_2(tmp_path, capsys, make, expected, action) -> None:
    from echoposed_ros.cli import main
    path = make(tmp_path)
    extra = ['--out', str(tmp_path / 'x.png')] if action == 'preview' else []
    rc = main(['volume', action, str(path), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith('echoposed volume: ') and expected in err and err.count('\n') == 1
    assert not (tmp_path / 'x.png').exists()


def test_base_geometry_follows_the_apex_the_sidecar_gives(tmp_path) -> None:
    from echoposed_sim.sector import SectorGeometry
    from echoposed_sim.volume_preview import base_geometry, volume_summary
    np.savez(tmp_path / 'v.npz', data=np.zeros((24, 20, 20), np.uint8), spacing=[5.0, 5.0, 6.0])
    sector = SectorGeometry(np.radians(60.0), 100.0, 64, 64)
    top = base_geometry(load_volume(tmp_path / 'v.npz'), sector)
    np.testing.assert_allclose(top['apex'], [47.5, 47.5, 0.0])
    np.testing.assert_allclose(top['beam'], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(top['centre_in_probe'], [0, 0, 69.0], atol=1e-9)
    side = load_volume(tmp_path / 'v.npz', apex=[0.0, 47.5, 69.0])           # the probe on the x = 0 face
    g = base_geometry(side, sector)
    np.testing.assert_allclose(g['beam'], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(g['fan'][0], [0.0, 47.5, 69.0], atol=1e-9)   # the outline starts at the apex
    assert np.abs(g['fan'][:, 1] - 47.5).max() < 1e-9                        # the fan lies in the plane y = c_y
    assert np.linalg.norm(g['fan'] - g['apex'], axis=1).max() == pytest.approx(100.0)
    assert 0.3 < g['inside_fraction'] < 1.0
    np.save(tmp_path / 'w.npy', np.zeros((24, 20, 20), np.uint8))
    away = load_volume(tmp_path / 'w.npy', spacing=[5.0, 5.0, 6.0], apex=[47.5, 47.5, 400.0], centre=[47.5, 47.5, 300])
    assert base_geometry(away, sector)['inside_fraction'] == 0.0             # pointing out of the volume
    assert any('0 % inside the volume' in line for line in volume_summary(away, sector))
