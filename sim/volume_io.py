"""Reading and writing 3D / 3D+t echo volumes: NIfTI, MetaImage, ``.npz`` and ``.npy``.

Formats (suffix decides):

- ``.nii`` / ``.nii.gz`` (nibabel): array ``(X, Y, Z[, T])``; spacing from the header's voxel
  sizes (``xyzt_units``: m and um are converted to mm; no unit is read as mm and said so, and
  refused when that makes the whole grid smaller than 1 mm); orientation from the sform (else
  the qform) when its code is set; the frame interval (``pixdim[4]``, when the time unit is set)
  gives the cardiac cycle.
- ``.mhd`` / ``.mha`` (SimpleITK): 3D or 4D scalar images; ``ElementSpacing`` (first three) read
  as mm (the format has no unit field); orientation from the direction cosines.
- ``.npz``: fields ``data`` in the Volume's order ``(T, Z, Y, X)`` or ``(Z, Y, X)`` and ``spacing``
  ``(sx, sy, sz)`` mm; optional ``cycle_s``, ``centre``, ``radius``, ``base_orbit``,
  ``base_probe``, ``view_names`` / ``view_orbits`` / ``view_probes``, ``name``, ``meta_json``
  (what :func:`save_volume` writes, so a phantom round-trips).
- ``.npy``: the bare array in the Volume's order; it has no spacing field, so the spacing comes
  from the ``spacing=`` argument or the sidecar.

Axes: the volume frame V is the voxel grid (index ``i`` along x, ``j`` along y, ``k`` along z,
scaled by the spacing). A file with an orientation (``orientation='file'``, the default) has its
voxel axes permuted and flipped, never resampled, so that they run along the file's own world
axes: for NIfTI x, y, z = R, A, S (RAS+), for MetaImage ITK's L, P, S (LPS+; the same heart
stored both ways differs by a half turn about z). Oblique axes are taken along the nearest world
axis, and the notes say by how much they were off. A file without an orientation (NIfTI
``qform_code`` and ``sform_code`` 0, ``.npz``, ``.npy``) or ``orientation: voxel`` in the
sidecar keeps the voxel axes as stored. ``meta['file']['notes']`` (:func:`volume_notes`) says
which was done and everything else that was read or assumed (spacing unit, centre, apex and
beam, cycle, intensity scaling); ``echoposed volume info`` prints it and ``echoposed volume
preview`` draws it.

Time: a 3D+t file holds one cardiac cycle unless ``frames_per_cycle`` says fewer frames make
one (then the first cycle is kept). A 3D file is one static frame.

Intensity (``normalise``): ``'auto'`` keeps uint8 data (0..255 meaning [0, 1]) and float data
already inside [0, 1]; anything else is scaled robustly, ``(x - p_lo) / (p_hi - p_lo)`` clipped to
[0, 1] with ``p_lo``, ``p_hi`` the 0.5th and 99.5th percentiles (``'percentile'``; computed on an
evenly strided subsample of at most 4 M voxels), or by min and max (``'minmax'``). The result is
uint8 for integer sources and float32 for floating-point ones (``dtype=`` overrides).

Geometry: the default base (apical) pose is the acquisition geometry of a 3D TTE volume: the
probe apex at the centre of the top face (``z = 0``, the first plane along the volume's z after
orientation), looking at the centre ``c`` (default: the grid centre). With the default centre
this is the identity pose, the volume's +z as the beam, and ``radius = (Z - 1) sz / 2``.
Override per file with a sidecar ``<file>.yaml`` (e.g. ``heart.nii.gz.yaml``) or with arguments
(arguments win over the sidecar, the sidecar over the file's own fields). Sidecar keys, all
optional: ``spacing`` [mm x3], ``centre`` [mm x3], ``radius`` mm, ``apex`` [mm x3] (the probe
apex; sets the base orbit and the radius), ``base_orbit`` / ``base_probe`` (3x3), ``cycle_s`` s,
``frames_per_cycle``, ``normalise``, ``orientation`` (file | voxel), ``percentiles`` [lo, hi],
``name``, ``views`` ({name: {orbit: 3x3, probe: 3x3}}). Sidecar points and the spacing are in the
volume frame after orientation. See docs/volumes.md.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .volume import StandardView, Volume, VolumeError

__all__ = ['ORIENTATIONS', 'SIDECAR_KEYS', 'SUFFIXES', 'load_volume', 'read_sidecar', 'save_volume', 'sidecar_path',
           'volume_files', 'volume_notes']

SUFFIXES = ('.nii', '.nii.gz', '.mhd', '.mha', '.npz', '.npy')
SIDECAR_KEYS = ('apex', 'base_orbit', 'base_probe', 'centre', 'cycle_s', 'frames_per_cycle', 'name', 'normalise',
                'orientation', 'percentiles', 'radius', 'spacing', 'views')
NORMALISE = ('auto', 'percentile', 'minmax', 'none')
ORIENTATIONS = ('file', 'voxel')
#: A file spacing read as mm without a declared unit is refused when the whole grid is smaller than this (mm):
#: it is then almost surely in metres.
_MIN_UNDECLARED_EXTENT_MM = 1.0
_MAX_PERCENTILE_SAMPLES = 4_000_000
_NIFTI_SPACE_TO_MM = {'mm': 1.0, 'meter': 1000.0, 'micron': 1e-3, 'unknown': 1.0}
_NIFTI_TIME_TO_S = {'sec': 1.0, 'msec': 1e-3, 'usec': 1e-6}


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return '.nii.gz' if name.endswith('.nii.gz') else path.suffix.lower()



def volume_files(folder: str | Path) -> list[Path]:
    """The volume files of ``folder`` (regular files named with one of :data:`SUFFIXES`, any case),
    sorted; sidecars (``heart.nii.gz.yaml``) and other files beside them are left out."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name.lower().endswith(SUFFIXES))

def sidecar_path(path: str | Path) -> Path:
    """The sidecar of a volume file: the same name with ``.yaml`` appended (``a.nii.gz`` -> ``a.nii.gz.yaml``)."""
    path = Path(path)
    return path.with_name(path.name + '.yaml')


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The overrides in ``path`` (a YAML mapping of :data:`SIDECAR_KEYS`); unknown keys are refused."""
    import yaml
    path = Path(path)
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise VolumeError(f'{path}: cannot read the volume sidecar: {err}') from err
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise VolumeError(f'{path}: a volume sidecar must be a YAML mapping, got {type(content).__name__}')
    unknown = sorted(set(content) - set(SIDECAR_KEYS))
    if unknown:
        raise VolumeError(f'{path}: unknown sidecar key(s) {unknown}; expected some of {list(SIDECAR_KEYS)}')
    return content


# ----------------------------------------------------------------------------------------- readers
# Each reader returns (array in the Volume's order (T, Z, Y, X) or (Z, Y, X), file facts dict).


def _raw_nifti_pixdim(path: Path, header_class: type) -> np.ndarray:
    """pixdim exactly as written in the file (nibabel's checks would replace 0 by 1 and -s by s)."""
    from nibabel.openers import ImageOpener
    with ImageOpener(str(path)) as f:
        raw = header_class.from_fileobj(f, check=False)
    return np.asarray(raw['pixdim'], dtype=np.float64)


def _read_nifti(path: Path, use_orientation: bool = True) -> tuple[np.ndarray, dict]:
    import nibabel as nib
    img = nib.load(str(path))
    header = img.header
    array = np.asanyarray(img.dataobj)
    space_unit, time_unit = header.get_xyzt_units()
    zooms = np.asarray(header['pixdim'][1:8], dtype=np.float64)
    facts: dict[str, Any] = {'format': 'nifti', 'file_shape': list(array.shape), 'notes': []}
    array = _squeeze_trailing(array, 4, path)
    if array.ndim >= 3:
        written = _raw_nifti_pixdim(path, type(header))[1:4]  # nibabel's load fixes 0 and < 0 silently
        if not (np.isfinite(written).all() and (written > 0).all()):
            raise VolumeError(f'{path}: voxel spacing {written.tolist()} (pixdim[1:4]) must be positive; zero or '
                              'negative spacing is refused')
        if space_unit not in _NIFTI_SPACE_TO_MM:
            raise VolumeError(f'{path}: spatial unit {space_unit!r} (xyzt_units) is not a length; expected mm, '
                              'meter, micron or unknown')
        spacing = written * _NIFTI_SPACE_TO_MM[space_unit]
        facts['spacing_unit'] = space_unit
        sform, qform = int(header['sform_code']), int(header['qform_code'])
        if sform > 0 or qform > 0:
            affine = np.asarray(img.affine, dtype=np.float64)
            facts['affine'] = affine.tolist()
            source = 'NIfTI sform' if sform > 0 else 'NIfTI qform'
            if use_orientation:
                array, spacing, facts['orientation'] = _orient(array, affine[:3, :3], spacing, path,
                                                               f'{source} (world axes R, A, S)')
            else:
                facts['orientation'] = _unoriented(f'the {source} is not applied (orientation: voxel)')
        else:
            facts['orientation'] = _unoriented('none in the file (qform_code and sform_code are 0)')
        facts['spacing'] = spacing
    if array.ndim == 4 and len(zooms) > 3 and time_unit in _NIFTI_TIME_TO_S and zooms[3] > 0:
        facts['frame_interval_s'] = float(zooms[3]) * _NIFTI_TIME_TO_S[time_unit]
    # (X, Y, Z[, T]) -> (T, Z, Y, X) / (Z, Y, X): reverse the axes
    return np.ascontiguousarray(np.transpose(array)), facts


def _unoriented(why: str) -> dict[str, Any]:
    """The orientation record of a grid taken as stored: file index axes i, j, k are the volume's x, y, z."""
    return {'applied': False, 'axes': ['+i', '+j', '+k'],
            'note': f'orientation: {why}; voxel axes i, j, k taken as x, y, z, the beam along +k'}


def _orient(array: np.ndarray, linear: np.ndarray, spacing: np.ndarray, path: Path,
            source: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Permute and flip the first three axes of ``array`` (file index order ``(i, j, k[, t])``) so that
    they run along the file's world axes +x, +y, +z.

    linear: (3, 3) voxel -> world directions (column c: index axis c; any scale); spacing: (3,) mm
    along i, j, k. Returns the reoriented array, its spacing (3,) mm along x, y, z, and the record
    (``axes``: which signed file axis became x, y, z; ``note``). Oblique axes are taken along the
    nearest world axis (no resampling) and the note says by how much they were off.
    """
    from nibabel.orientations import apply_orientation, io_orientation
    linear = np.asarray(linear, dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = linear
    if not (np.isfinite(linear).all() and abs(np.linalg.det(linear)) > 1e-12):
        raise VolumeError(f'{path}: the {source} orientation matrix {linear.round(6).tolist()} is singular; '
                          'expected three independent voxel axes (or set "orientation: voxel" in the sidecar)')
    ornt = io_orientation(affine)
    if not np.isfinite(ornt).all():
        raise VolumeError(f'{path}: the {source} orientation matrix {linear.round(6).tolist()} has no '
                          'nearest axis order; expected three independent voxel axes')
    out_axis = ornt[:, 0].astype(int)
    flips = ornt[:, 1]
    axes = [''] * 3
    out_spacing = np.empty(3)
    for c in range(3):
        axes[out_axis[c]] = ('+' if flips[c] > 0 else '-') + 'ijk'[c]
        out_spacing[out_axis[c]] = spacing[c]
    units = linear / np.linalg.norm(linear, axis=0)
    off_deg = float(np.degrees(np.arccos(np.clip(np.abs(units[out_axis, np.arange(3)]), 0.0, 1.0))).max())
    if axes == ['+i', '+j', '+k']:
        note = f'orientation: from the {source}; the voxel axes already run along +x, +y, +z, kept as stored'
    else:
        note = (f'orientation: from the {source}; volume x, y, z = file axes {", ".join(axes)} '
                f'(voxels permuted/flipped, not resampled); the beam (+z) is file axis {axes[2]}')
    if off_deg > 0.01:
        note += f'; the file axes are oblique, up to {off_deg:.2f} deg off the world axes (taken along the nearest)'
    record = {'applied': True, 'axes': axes, 'oblique_deg': off_deg, 'note': note}
    return apply_orientation(array, ornt), out_spacing, record


def _metaimage_header_spacing(path: Path) -> list[float] | None:
    """ElementSpacing (or ElementSize) as written in a MetaImage header; ITK itself takes |spacing|."""
    with open(path, 'rb') as f:
        head = f.read(16384)
    for raw in head.split(b'\n'):
        key, _, value = raw.decode('latin-1').partition('=')
        if key.strip() in ('ElementSpacing', 'ElementSize'):
            try:
                return [float(v) for v in value.split()]
            except ValueError:
                return None
        if key.strip() == 'ElementDataFile':
            break
    return None


def _read_metaimage(path: Path, use_orientation: bool = True) -> tuple[np.ndarray, dict]:
    import SimpleITK as sitk
    written = _metaimage_header_spacing(path)
    if written is not None and any(not (np.isfinite(v) and v > 0) for v in written[:3]):
        raise VolumeError(f'{path}: voxel spacing {written} (ElementSpacing) must be positive; zero or negative '
                          'spacing is refused')
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise VolumeError(f'{path}: SimpleITK cannot read it: {str(err).strip().splitlines()[-1]}') from err
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeError(f'{path}: unsupported pixel type {img.GetPixelIDTypeAsString()!r} with '
                          f'{img.GetNumberOfComponentsPerPixel()} components; expected scalar intensities')
    array = sitk.GetArrayFromImage(img)  # (Z, Y, X) or (T, Z, Y, X): reversed ITK index order
    spacing = np.asarray(img.GetSpacing(), dtype=np.float64)
    dim = img.GetDimension()
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(dim, dim)
    facts: dict[str, Any] = {'format': 'metaimage', 'file_shape': list(array.shape), 'notes': [],
                             'origin': list(img.GetOrigin()), 'direction': direction.reshape(-1).tolist(),
                             'spacing_unit': 'unknown'}
    if dim >= 3 and array.ndim >= 3:
        spacing = spacing[:3]
        linear = direction[:3, :3]
        if not use_orientation:
            facts['orientation'] = _unoriented('the MetaImage direction is not applied (orientation: voxel)')
        elif np.allclose(linear, np.eye(3), atol=1e-9):
            facts['orientation'] = {'applied': True, 'axes': ['+i', '+j', '+k'], 'oblique_deg': 0.0,
                                    'note': 'orientation: MetaImage direction is the identity; voxel axes i, j, k '
                                            'are the volume x, y, z, the beam along +k'}
        else:
            xyz = np.transpose(array)  # (X, Y, Z[, T])
            xyz, spacing, facts['orientation'] = _orient(xyz, linear, spacing, path,
                                                         'MetaImage direction (ITK world axes L, P, S)')
            array = np.ascontiguousarray(np.transpose(xyz))
        facts['spacing'] = spacing
    return array, facts


def _read_npz(path: Path, use_orientation: bool = True) -> tuple[np.ndarray, dict]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            fields = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as err:
        raise VolumeError(f'{path}: cannot read it as .npz: {err}') from err
    if 'data' not in fields:
        raise VolumeError(f'{path}: .npz needs a field "data" ((T, Z, Y, X) or (Z, Y, X)) and "spacing" '
                          f'((sx, sy, sz) mm); found fields {sorted(fields)}')
    facts: dict[str, Any] = {'format': 'npz', 'file_shape': list(fields['data'].shape),
                             'orientation': {'applied': False, 'axes': ['+i', '+j', '+k'],
                                             'note': "orientation: .npz holds the volume's own axes (T, Z, Y, X); "
                                                     'taken as stored, the beam along +z'},
                             'spacing_unit': 'mm'}
    for key in ('spacing', 'centre', 'radius', 'cycle_s', 'base_orbit', 'base_probe'):
        if key in fields:
            facts[key] = fields[key]
    if 'name' in fields:
        facts['name'] = str(fields['name'])
    if 'meta_json' in fields:
        try:
            facts['meta'] = json.loads(str(fields['meta_json']))
        except json.JSONDecodeError as err:
            raise VolumeError(f'{path}: field "meta_json" is not valid JSON: {err}') from err
    if 'view_names' in fields:
        names = [str(n) for n in np.atleast_1d(fields['view_names'])]
        orbits, probes = fields.get('view_orbits'), fields.get('view_probes')
        if orbits is None or probes is None or len(orbits) != len(names) or len(probes) != len(names):
            raise VolumeError(f'{path}: fields view_names, view_orbits, view_probes must all be present, '
                              f'one (3, 3) orbit and probe per name')
        facts['views'] = {n: {'orbit': orbits[i], 'probe': probes[i]} for i, n in enumerate(names)}
    return fields['data'], facts


def _read_npy(path: Path, use_orientation: bool = True) -> tuple[np.ndarray, dict]:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise VolumeError(f'{path}: cannot read it as .npy: {err}') from err
    return array, {'format': 'npy', 'file_shape': list(array.shape),
                   'orientation': {'applied': False, 'axes': ['+i', '+j', '+k'],
                                   'note': ".npy holds the volume's own axes (T, Z, Y, X); taken as stored, the "
                                           'beam along +z'}}


_READERS = {'.nii': _read_nifti, '.nii.gz': _read_nifti, '.mhd': _read_metaimage, '.mha': _read_metaimage,
            '.npz': _read_npz, '.npy': _read_npy}


def _squeeze_trailing(array: np.ndarray, keep: int, path: Path) -> np.ndarray:
    """Drop size-1 axes beyond the first ``keep`` (NIfTI pads dimensions with 1s)."""
    while array.ndim > keep and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim > keep:
        raise VolumeError(f'{path}: {array.ndim}D data of shape {array.shape}; expected 3D or 3D+t')
    return array


# ----------------------------------------------------------------------------------------- checks


def _check_array(array: np.ndarray, path: Path) -> np.ndarray:
    """-> (T, Z, Y, X) with T >= 1, after refusing 2D data, odd dtypes and NaN/inf."""
    if not isinstance(array, np.ndarray) or array.dtype.fields is not None or array.dtype.kind not in 'uif':
        raise VolumeError(f'{path}: unsupported data type {getattr(array, "dtype", type(array).__name__)}; '
                          'expected integer or floating-point intensities')
    if array.ndim < 3 or (array.ndim == 3 and 1 in array.shape) or (array.ndim == 4 and 1 in array.shape[1:]):
        raise VolumeError(f'{path}: 2D data (shape {array.shape}); expected a 3D or 3D+t volume '
                          '(at least 2 voxels along each of x, y, z)')
    if array.ndim > 4:
        raise VolumeError(f'{path}: {array.ndim}D data of shape {array.shape}; expected 3D or 3D+t')
    if array.ndim == 3:
        array = array[None]
    if array.shape[0] < 1:
        raise VolumeError(f'{path}: no time frames (shape {array.shape})')
    if array.dtype.kind == 'f':
        finite = np.isfinite(array)
        if not finite.all():
            bad = array.size - int(np.count_nonzero(finite))
            raise VolumeError(f'{path}: data holds {bad} NaN or infinite value(s); expected finite intensities')
    return array


def _vector3(value: Any, path: Path, what: str, positive: bool = False) -> np.ndarray:
    try:
        v = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise VolumeError(f'{path}: {what} must be 3 numbers, got {value!r}') from err
    if v.shape != (3,) or not np.isfinite(v).all():
        raise VolumeError(f'{path}: {what} must be 3 finite numbers, got {np.asarray(value).tolist()}')
    if positive and (v <= 0).any():
        raise VolumeError(f'{path}: {what} must be positive (mm), got {v.tolist()}')
    return v


def _scalar(value: Any, path: Path, what: str) -> float:
    try:
        x = float(np.asarray(value, dtype=np.float64).reshape(()))
    except (TypeError, ValueError) as err:
        raise VolumeError(f'{path}: {what} must be a number, got {value!r}') from err
    if not (np.isfinite(x) and x > 0):
        raise VolumeError(f'{path}: {what} must be positive and finite, got {x}')
    return x


def _rotation(value: Any, path: Path, what: str) -> np.ndarray:
    from echoposed_ros.geometry import GeometryError, check_rotation
    try:
        return check_rotation(np.asarray(value, dtype=np.float64), what)
    except (GeometryError, TypeError, ValueError) as err:
        raise VolumeError(f'{path}: {what} is not a rotation matrix: {err}') from err


def _canonical(orbit: np.ndarray, probe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical gauge (no twist about z in the orbit); a pose already canonical is kept bit for bit."""
    from echoposed_ros.geometry import gauge_fix, swing_twist
    _, tau = swing_twist(orbit)
    if abs(float(tau)) < 1e-12:
        return orbit, probe
    fixed = gauge_fix((orbit, probe))
    return fixed.orbit, fixed.probe


def _swing_to(direction: np.ndarray) -> np.ndarray:
    """The twist-free rotation taking e_z to the unit vector ``direction``."""
    from scipy.spatial.transform import Rotation
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, direction)
    s, c = np.linalg.norm(axis), float(np.dot(z, direction))
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])  # half turn about x: twist-free
    return Rotation.from_rotvec(axis / s * np.arctan2(s, c)).as_matrix()


# ----------------------------------------------------------------------------------------- intensity


def _normalise(array: np.ndarray, method: str, percentiles: tuple[float, float], dtype: str | None,
               path: Path) -> tuple[np.ndarray, dict]:
    if method not in NORMALISE:
        raise VolumeError(f'{path}: normalise must be one of {list(NORMALISE)}, got {method!r}')
    integer_source = array.dtype.kind in 'ui'
    out_dtype = dtype or ('uint8' if integer_source else 'float32')
    if out_dtype not in ('uint8', 'float32'):
        raise VolumeError(f'{path}: dtype must be "uint8" or "float32", got {dtype!r}')
    in_unit = array.dtype == np.uint8 or (array.dtype.kind == 'f' and array.size and array.min() >= 0
                                          and array.max() <= 1)
    if method == 'none' or (method == 'auto' and in_unit):
        if not in_unit:
            raise VolumeError(f'{path}: normalise="none" needs uint8 data or floats within [0, 1]; got '
                              f'{array.dtype} in [{array.min()}, {array.max()}]')
        unit = array if array.dtype == np.uint8 else array.astype(np.float32, copy=False)
        info = {'method': 'none', 'source_dtype': str(array.dtype)}
        return _to_dtype(unit, out_dtype), info
    if method == 'minmax':
        lo, hi = float(array.min()), float(array.max())
    else:
        lo_p, hi_p = (float(p) for p in percentiles)
        if not 0 <= lo_p < hi_p <= 100:
            raise VolumeError(f'{path}: percentiles must satisfy 0 <= lo < hi <= 100, got {percentiles}')
        flat = array.reshape(-1)
        step = max(1, flat.size // _MAX_PERCENTILE_SAMPLES)
        lo, hi = (float(v) for v in np.percentile(flat[::step], [lo_p, hi_p]))
    if not hi > lo:
        raise VolumeError(f'{path}: intensities are constant ({lo}) over the scaling range; nothing to image')
    scaled = (array.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    np.clip(scaled, 0.0, 1.0, out=scaled)
    info = {'method': 'percentile' if method in ('auto', 'percentile') else 'minmax', 'lo': lo, 'hi': hi,
            'source_dtype': str(array.dtype)}
    if info['method'] == 'percentile':
        info['percentiles'] = [float(p) for p in percentiles]
    return _to_dtype(scaled, out_dtype), info


def _to_dtype(unit: np.ndarray, dtype: str) -> np.ndarray:
    """[0, 1] float or uint8 data -> the requested dtype (uint8 means value / 255)."""
    if dtype == 'uint8':
        if unit.dtype == np.uint8:
            return np.ascontiguousarray(unit)
        return np.ascontiguousarray(np.rint(unit * np.float32(255)).astype(np.uint8))
    if unit.dtype == np.uint8:
        return np.ascontiguousarray(unit.astype(np.float32) / np.float32(255))
    return np.ascontiguousarray(unit, dtype=np.float32)


# ----------------------------------------------------------------------------------------- load


def load_volume(path: str | Path, *, spacing: ArrayLike | None = None, centre: ArrayLike | None = None,
                radius: float | None = None, apex: ArrayLike | None = None, base_orbit: ArrayLike | None = None,
                base_probe: ArrayLike | None = None, cycle_s: float | None = None,
                frames_per_cycle: int | None = None, normalise: str | None = None,
                percentiles: tuple[float, float] | None = None, dtype: str | None = None,
                sidecar: bool | str | Path = True, name: str | None = None,
                orientation: str | None = None) -> Volume:
    """Read a 3D or 3D+t volume file into a :class:`Volume` (see the module docstring for formats).

    spacing, centre, apex: (3,) mm in the volume frame; radius: mm; base_orbit, base_probe: (3, 3)
    rotations (made canonical); cycle_s: s per cardiac cycle (default: NIfTI frame interval x
    frames, the .npz field, else 1.0); frames_per_cycle: frames of one cycle when the file holds
    more (the first cycle is kept); normalise: 'auto' (default), 'percentile', 'minmax', 'none';
    percentiles: (lo, hi) in percent (default (0.5, 99.5)); dtype: 'uint8' / 'float32' (default:
    uint8 for integer files, float32 for float files); sidecar: True reads ``<file>.yaml`` when it
    exists, a path reads that file, False reads none; orientation: 'file' (default: apply the
    file's NIfTI affine or ITK direction, see the module docstring) or 'voxel' (take the voxel axes
    as stored). Arguments override the sidecar, which overrides the file. What was read and what
    was assumed is listed in ``meta['file']['notes']`` (:func:`volume_notes`). Raises
    :class:`VolumeError` naming the file and the problem.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in _READERS:
        raise VolumeError(f'{path}: unsupported volume file type {suffix or "(no suffix)"!r}; '
                          f'expected one of {list(SUFFIXES)}')
    if not path.is_file():
        raise VolumeError(f'{path}: no such volume file')

    side: dict[str, Any] = {}
    side_file = None
    if sidecar is True:
        side_file = sidecar_path(path) if sidecar_path(path).is_file() else None
    elif sidecar:
        side_file = Path(sidecar)
        if not side_file.is_file():
            raise VolumeError(f'{side_file}: no such sidecar file (for volume {path})')
    if side_file is not None:
        side = read_sidecar(side_file)

    def pick(key: str, argument: Any, facts: dict | None = None) -> Any:
        if argument is not None:
            return argument
        if key in side:
            return side[key]
        return None if facts is None else facts.get(key)

    orient = pick('orientation', orientation) or 'file'
    if orient not in ORIENTATIONS:
        raise VolumeError(f'{path}: orientation must be one of {list(ORIENTATIONS)}, got {orient!r}')
    try:
        array, facts = _READERS[suffix](path, orient == 'file')
    except VolumeError:
        raise
    except Exception as err:  # a reader library's own error on a broken file
        raise VolumeError(f'{path}: cannot read it as {suffix}: {type(err).__name__}: {err}') from err

    data = _check_array(array, path)

    # time
    n_file = data.shape[0]
    fpc = pick('frames_per_cycle', frames_per_cycle)
    if fpc is not None:
        if isinstance(fpc, bool) or not isinstance(fpc, (int, np.integer)) or not 1 <= fpc <= n_file:
            raise VolumeError(f'{path}: frames_per_cycle must be an integer in [1, {n_file}] (frames in the file), '
                              f'got {fpc!r}')
        data = data[:int(fpc)]
    n_frames = data.shape[0]
    cycle = pick('cycle_s', cycle_s, facts)
    cycle_source = 'argument' if cycle_s is not None else 'sidecar' if 'cycle_s' in side else 'file'
    if cycle is None and 'frame_interval_s' in facts:
        cycle = facts['frame_interval_s'] * n_frames
    if cycle is None:
        cycle, cycle_source = 1.0, 'default'
    cycle = _scalar(cycle, path, 'cycle_s')
    notes = [facts['orientation']['note']] if 'orientation' in facts else []

    # spacing
    sp = pick('spacing', spacing, facts)
    if sp is None:
        raise VolumeError(f'{path}: {suffix} holds no voxel spacing; pass spacing=(sx, sy, sz) in mm or write '
                          f'"spacing: [sx, sy, sz]" into the sidecar {sidecar_path(path)}')
    sp = _vector3(sp, path, 'spacing', positive=True)
    sp_source = _source('spacing', spacing, side, facts)
    extent_mm = float(((np.array(data.shape[:0:-1]) - 1) * sp).max())
    if sp_source == 'file':
        unit = facts.get('spacing_unit', 'unknown')
        if unit == 'unknown' and extent_mm < _MIN_UNDECLARED_EXTENT_MM:
            raise VolumeError(f'{path}: voxel spacing {sp.tolist()} has no unit in the file and, read as mm, makes '
                              f'the volume {extent_mm:.3g} mm wide (metres?); set the unit in the file or write '
                              f'"spacing: [sx, sy, sz]" in mm into the sidecar {sidecar_path(path)}')
        notes.append('spacing: from the file, ' + ({'mm': 'in mm', 'meter': 'in m, converted to mm',
                                                    'micron': 'in um, converted to mm'}.get(unit)
                                                   or 'which gives no unit: read as mm'))
    else:
        notes.append(f'spacing: from the {sp_source} (mm)')

    # intensity
    method = pick('normalise', normalise) or 'auto'
    pct = pick('percentiles', percentiles) or (0.5, 99.5)
    data, intensity = _normalise(data, method, tuple(pct), dtype, path)

    # geometry: centre, then the base pose (apex, radius, orbit), then the probe factor
    extent = (np.array(data.shape[:0:-1]) - 1) * sp
    c = pick('centre', centre, facts)
    c = extent / 2 if c is None else _vector3(c, path, 'centre')
    apex_value = pick('apex', apex)
    r = pick('radius', radius, facts)
    orbit = pick('base_orbit', base_orbit, facts)
    if apex_value is not None:
        if (radius is not None or 'radius' in side) or (base_orbit is not None or 'base_orbit' in side):
            raise VolumeError(f'{path}: give either apex or radius/base_orbit, not both (apex sets both)')
        apex_point = _vector3(apex_value, path, 'apex')
        r, orbit = None, None
    else:
        apex_point = np.array([extent[0] / 2, extent[1] / 2, 0.0])  # centre of the top face (k = 0)
    beam = c - apex_point
    distance = float(np.linalg.norm(beam))
    if r is None:
        if distance <= 0:
            raise VolumeError(f'{path}: the apex {apex_point.tolist()} coincides with the centre; no orbit radius')
        r = distance
    r = _scalar(r, path, 'radius')
    if orbit is None:
        if distance <= 0:
            raise VolumeError(f'{path}: the apex {apex_point.tolist()} coincides with the centre; no beam direction')
        orbit = _swing_to(beam / distance)
    orbit = _rotation(orbit, path, 'base_orbit')
    probe = pick('base_probe', base_probe, facts)
    probe = np.eye(3) if probe is None else _rotation(probe, path, 'base_probe')
    orbit, probe = _canonical(orbit, probe)
    notes += _geometry_notes(c, r, orbit, centre=_source('centre', centre, side, facts),
                             apex=_source('apex', apex, side), radius=_source('radius', radius, side, facts),
                             orbit_from=_source('base_orbit', base_orbit, side, facts))
    if n_frames > 1 or cycle_source != 'default':
        how = {'default': 'assumed (the file gives no frame interval)',
               'file': 'from the file' + ('' if 'cycle_s' in facts else ' (frame interval x frames)')}
        notes.append(f'cycle: {cycle:g} s for {n_frames} frame(s), {how.get(cycle_source, "from the " + cycle_source)}')
    notes.append(_intensity_note(intensity))

    views = {}
    raw_views = side.get('views', facts.get('views')) or {}
    if not isinstance(raw_views, dict):
        raise VolumeError(f'{path}: views must be a mapping name -> {{orbit, probe}}, got {type(raw_views).__name__}')
    for view_name, view in raw_views.items():
        if not isinstance(view, dict) or set(view) != {'orbit', 'probe'}:
            raise VolumeError(f'{path}: view {view_name!r} must have exactly the keys orbit and probe')
        v_orbit, v_probe = _canonical(_rotation(view['orbit'], path, f'view {view_name} orbit'),
                                      _rotation(view['probe'], path, f'view {view_name} probe'))
        views[str(view_name)] = StandardView(v_orbit, v_probe)

    meta = dict(facts.get('meta') or {})
    meta['file'] = {
        'path': str(path), 'format': facts['format'], 'file_shape': facts['file_shape'],
        'frames_in_file': int(n_file), 'cycle_s_from': cycle_source, 'intensity': intensity,
        'sidecar': None if side_file is None else str(side_file), 'orientation': facts.get('orientation'),
        'notes': notes, **{key: facts[key] for key in ('affine', 'origin', 'direction') if key in facts},
    }
    vol_name = name or side.get('name') or facts.get('name') or str(path)
    return Volume(data=data, spacing=sp, centre=c, radius=r, base_orbit=orbit, base_probe=probe, cycle_s=cycle,
                  views=views, name=str(vol_name), meta=meta)


def _source(key: str, argument: Any, side: dict, facts: dict | None = None) -> str | None:
    """Where a loader setting came from: 'argument', 'sidecar', 'file', or None (a default)."""
    if argument is not None:
        return 'argument'
    if key in side:
        return 'sidecar'
    return 'file' if facts is not None and key in facts else None


def _geometry_notes(c: np.ndarray, r: float, orbit: np.ndarray, *,
                    centre: str | None, apex: str | None, radius: str | None, orbit_from: str | None) -> list[str]:
    """What the loader's base pose rests on: the centre, the apex and the beam (volume frame, mm)."""
    beam = orbit[:, 2]
    o = c - r * beam
    fmt = ', '.join
    notes = [f'centre: [{fmt(f"{v:.1f}" for v in c)}] mm, '
             + (f'from the {centre}' if centre else 'the grid centre (default)')]
    if apex:
        how = f'from the {apex}'
    elif radius or orbit_from:
        how = 'from ' + ' and '.join(f'{k} ({s})' for k, s in (('radius', radius), ('base_orbit', orbit_from)) if s)
    else:
        how = 'the centre of the top face z = 0 (default)'
    notes.append(f'apex: [{fmt(f"{v:.1f}" for v in o)}] mm, {how}; beam to the centre '
                 f'[{fmt(f"{v:.3f}" for v in beam)}], orbit radius {r:.1f} mm')
    return notes


def _intensity_note(info: dict) -> str:
    if info['method'] == 'none':
        return f'intensity: {info["source_dtype"]} taken as it is ([0, 1], uint8 as value / 255)'
    if info['method'] == 'percentile':
        lo_p, hi_p = info['percentiles']
        return (f'intensity: {info["source_dtype"]} scaled to [0, 1] between the {lo_p:g}th and {hi_p:g}th '
                f'percentiles ({info["lo"]:.4g} .. {info["hi"]:.4g})')
    return (f'intensity: {info["source_dtype"]} scaled to [0, 1] between min and max '
            f'({info["lo"]:.4g} .. {info["hi"]:.4g})')


def volume_notes(volume: Volume) -> list[str]:
    """What :func:`load_volume` read and assumed for ``volume`` (orientation, spacing unit, centre,
    apex and beam, cycle, intensity), one line each; empty for a volume not loaded from a file."""
    return [str(n) for n in (volume.meta.get('file') or {}).get('notes', [])]


# ----------------------------------------------------------------------------------------- save


def _geometry_yaml(volume: Volume) -> dict:
    return {
        'spacing': volume.spacing.tolist(), 'centre': volume.centre.tolist(), 'radius': float(volume.radius),
        'base_orbit': np.asarray(volume.base_orbit).tolist(), 'base_probe': np.asarray(volume.base_probe).tolist(),
        'cycle_s': float(volume.cycle_s), 'frames_per_cycle': volume.frames, 'normalise': 'none',
        'name': volume.name,
        'views': {k: {'orbit': np.asarray(v.orbit).tolist(), 'probe': np.asarray(v.probe).tolist()}
                  for k, v in volume.views.items()},
    }


def save_volume(volume: Volume, path: str | Path, *, compress: bool = False) -> Path:
    """Write ``volume`` to ``.npz`` (every field, so it loads back equal) or ``.nii`` / ``.nii.gz``.

    NIfTI gets the data as ``(X, Y, Z, T)`` with voxel sizes in mm and the frame interval in s,
    plus a sidecar ``<file>.yaml`` with the geometry (centre, radius, base pose, views, cycle),
    so :func:`load_volume` rebuilds the same Volume (``meta`` is kept only by ``.npz``).
    compress: zlib-compress the ``.npz`` (smaller, several times slower). Returns the path.
    """
    if not isinstance(volume, Volume):
        raise VolumeError(f'save_volume: expected a Volume, got {type(volume).__name__}')
    path = Path(path)
    suffix = _suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == '.npz':
        names = sorted(volume.views)
        try:
            meta_json = json.dumps(volume.meta)
        except (TypeError, ValueError) as err:
            raise VolumeError(f'{volume.name}: meta is not JSON-serialisable: {err}') from err
        fields = dict(
            data=volume.data, spacing=volume.spacing, centre=volume.centre, radius=np.float64(volume.radius),
            base_orbit=np.asarray(volume.base_orbit, dtype=np.float64),
            base_probe=np.asarray(volume.base_probe, dtype=np.float64), cycle_s=np.float64(volume.cycle_s),
            name=np.str_(volume.name), meta_json=np.str_(meta_json), view_names=np.array(names, dtype=np.str_),
            view_orbits=np.array([volume.views[n].orbit for n in names], dtype=np.float64).reshape(-1, 3, 3),
            view_probes=np.array([volume.views[n].probe for n in names], dtype=np.float64).reshape(-1, 3, 3),
            format_version=np.int64(1))
        with open(path, 'wb') as f:
            (np.savez_compressed if compress else np.savez)(f, **fields)
        return path
    if suffix in ('.nii', '.nii.gz'):
        import nibabel as nib
        import yaml
        affine = np.diag(list(volume.spacing) + [1.0])
        img = nib.Nifti1Image(np.ascontiguousarray(np.transpose(volume.data, (3, 2, 1, 0))), affine)
        img.header.set_xyzt_units('mm', 'sec')
        zooms = list(volume.spacing) + [volume.cycle_s / volume.frames]
        img.header.set_zooms(zooms)
        nib.save(img, str(path))
        sidecar_path(path).write_text(yaml.safe_dump(_geometry_yaml(volume), sort_keys=True))
        return path
    raise VolumeError(f'{path}: save_volume writes .npz, .nii or .nii.gz, not {suffix or "(no suffix)"!r}')
