"""2D sector slices of a 3D+t volume at probe poses (docs/method.md section 2).

A slice at pose ``(R_v, R_p)`` and cardiac phase ``t`` samples the volume at the points
``o + R (x, 0, z)`` (mm, volume frame V) for the in-fan pixels of a :class:`SectorGeometry`,
with ``R = R_v R_p`` and apex ``o = c - r R_v e_z``. Space: trilinear between voxel centres
(voxel ``[t, k, j, i]`` sits at ``(i sx, j sy, k sz)``); a point outside the box of voxel
centres ``[0, (X-1) sx] x [0, (Y-1) sy] x [0, (Z-1) sz]`` is 0. Time: phase ``t`` in cycles,
periodic (``t mod 1``), frame ``f`` at phase ``f / T``, linear between neighbouring frames
(the last frame blends into frame 0). Pixels outside the fan are 0. Output: float32 in [0, 1]
(uint8 volumes are read as value / 255).

Two implementations: :func:`slice_batch` (numba; the one to use) and
:func:`slice_batch_reference` (plain numpy, written separately: the test oracle). The numba
kernels take a :class:`Volume` or its bricked copy from :func:`prepare_volume` (same slices,
fewer cache misses); jobs of 100k points or more run on all numba threads in the importing
process, others (and everything in a fork()ed child) on one thread. Kernels compile on first use
and are cached on disk (numba's ``cache=True``: ``__pycache__`` beside this file, or
``NUMBA_CACHE_DIR``); :func:`warm_up` compiles or loads them ahead. See docs/slicer.md.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np
from numpy.typing import ArrayLike

from echoposed_ros.errors import EchoposedError

from .sector import SectorGeometry
from .volume import Volume

__all__ = ['DEFAULT_SECTOR', 'PreparedVolume', 'SlicerError', 'poses_to_voxel_frames', 'prepare_volume',
           'slice_batch', 'slice_batch_reference', 'slice_volume', 'warm_up']

DEFAULT_SECTOR = SectorGeometry()

# A pose factor counts as a rotation when ||R^T R - I|| and |det R - 1| stay below this (the
# geometry core's float32-safe tolerance).
_ROTATION_ATOL = 1e-5

# numba's thread pool must not be entered from two Python threads at once.
_KERNEL_LOCK = threading.Lock()


class SlicerError(EchoposedError):
    """Bad input to the slicer (pose, phase, output buffer); the message names the argument and value."""


# --------------------------------------------------------------------------------------------------
# input checks and per-slice parameters


def _as_rotations(R: ArrayLike, name: str) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 3 or R.shape[1:] != (3, 3):
        raise SlicerError(f'{name}: expected rotation matrices of shape (N, 3, 3), got shape {R.shape}')
    if not np.isfinite(R).all():
        bad = int(np.flatnonzero(~np.isfinite(R).all(axis=(1, 2)))[0])
        raise SlicerError(f'{name}[{bad}]: contains NaN or inf: {R[bad].tolist()}')
    err = np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max(axis=(1, 2))
    err = np.maximum(err, np.abs(np.linalg.det(R) - 1.0))
    if (err > _ROTATION_ATOL).any():
        bad = int(np.argmax(err))
        raise SlicerError(f'{name}[{bad}]: not a rotation matrix (orthonormality / det error {err[bad]:.3g} '
                          f'> {_ROTATION_ATOL:g}): {R[bad].tolist()}')
    return R


def _as_phases(ts: ArrayLike, n: int) -> np.ndarray:
    t = np.asarray(ts, dtype=np.float64)
    if t.shape != (n,):
        raise SlicerError(f'ts: expected {n} cardiac phases, shape ({n},), got shape {t.shape}')
    if not np.isfinite(t).all():
        raise SlicerError(f'ts: contains NaN or inf at index {int(np.flatnonzero(~np.isfinite(t))[0])}')
    return t


def _frames_and_weights(ts: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase (cycles) -> (f0, f1, w): sample = (1 - w) frame f0 + w frame f1, periodic."""
    f = np.mod(ts, 1.0) * frames
    f0 = np.minimum(np.floor(f), frames - 1)  # t = -1e-20 gives mod 1.0 -> f0 = T-1, w = 1 -> frame 0
    w = f - f0
    f0 = f0.astype(np.int64)
    return f0, (f0 + 1) % frames, w


def poses_to_voxel_frames(volume: Volume, orbits: ArrayLike, probes: ArrayLike,
                          radius: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-slice apex and probe axes in voxel-index units (continuous ``(i, j, k)``).

    Returns ``(o, ex, ez)``, each ``(N, 3)`` float64: the probe-frame point ``(x, 0, z)`` mm lands
    at voxel coordinates ``o + x ex + z ez``. ``orbits``, ``probes``: ``(N, 3, 3)`` rotations.
    """
    R_v = _as_rotations(orbits, 'orbits')
    R_p = _as_rotations(probes, 'probes')
    if R_v.shape != R_p.shape:
        raise SlicerError(f'orbits and probes differ in batch size: {R_v.shape[0]} vs {R_p.shape[0]}')
    r = volume.radius if radius is None else float(radius)
    if not (np.isfinite(r) and r >= 0):
        raise SlicerError(f'radius: expected a finite orbit radius >= 0 mm, got {radius!r}')
    R = R_v @ R_p
    apex = volume.centre[None, :] - r * R_v[:, :, 2]
    s = volume.spacing[None, :]
    return apex / s, R[:, :, 0] / s, R[:, :, 2] / s


@lru_cache(maxsize=32)
def _sector_tables(sector: SectorGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In-fan pixels: flat index (M,) uint64, lateral x (M,) and depth z (M,) mm, float64 (all writeable)."""
    idx = sector.inside_index
    pts = sector.points.reshape(-1, 3)[idx]
    return idx.astype(np.uint64), np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 2])


def _slice_params(volume, orbits, probes, ts, radius):
    if not isinstance(volume, Volume):
        raise SlicerError(f'volume: expected an echoposed_sim.volume.Volume, got {type(volume).__name__}')
    o, ex, ez = poses_to_voxel_frames(volume, orbits, probes, radius)
    t = _as_phases(ts, o.shape[0])
    f0, f1, w = _frames_and_weights(t, volume.frames)
    scale = 1.0 / 255.0 if volume.data.dtype == np.uint8 else 1.0
    return o, ex, ez, f0, f1, w, scale


def _output(out, n: int, sector: SectorGeometry) -> np.ndarray:
    shape = (n,) + sector.shape
    if out is None:
        return np.zeros(shape, dtype=np.float32)
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.float32 \
            or not out.flags.c_contiguous:
        raise SlicerError(f'out: expected a C-contiguous float32 array of shape {shape}, '
                          f'got {getattr(out, "dtype", type(out).__name__)} {getattr(out, "shape", None)}')
    out.fill(0.0)
    return out


# --------------------------------------------------------------------------------------------------
# plain numpy reference (test oracle)


def slice_batch_reference(volume: Volume, orbits: ArrayLike, probes: ArrayLike, ts: ArrayLike,
                          sector: SectorGeometry = DEFAULT_SECTOR, *, radius: float | None = None) -> np.ndarray:
    """Same contract as :func:`slice_batch`, in plain numpy (slow, memory-hungry: for tests)."""
    R_v = _as_rotations(orbits, 'orbits')
    R_p = _as_rotations(probes, 'probes')
    if R_v.shape != R_p.shape:
        raise SlicerError(f'orbits and probes differ in batch size: {R_v.shape[0]} vs {R_p.shape[0]}')
    n = R_v.shape[0]
    t = _as_phases(ts, n)
    r = volume.radius if radius is None else float(radius)
    # Points in V (mm): o + R p for the probe-frame point p of every pixel.
    R = np.einsum('nab,nbc->nac', R_v, R_p)
    apex = volume.centre - r * R_v[:, :, 2]                                    # (N, 3)
    p_probe = sector.points.reshape(-1, 3)                                     # (P, 3)
    pts = apex[:, None, :] + np.einsum('nab,pb->npa', R, p_probe)              # (N, P, 3)
    vox = pts / volume.spacing                                                 # continuous (i, j, k)
    data = volume.data
    T = data.shape[0]
    size = np.array([data.shape[3], data.shape[2], data.shape[1]])             # (X, Y, Z)
    inside = np.all((vox >= 0) & (vox <= size - 1), axis=-1) & sector.mask.reshape(1, -1)
    lo = np.clip(np.floor(vox).astype(np.int64), 0, size - 2)
    frac = vox - lo
    f = np.mod(t, 1.0) * T
    f0 = np.minimum(np.floor(f), T - 1)
    wt = (f - f0)[:, None]
    f0 = f0.astype(np.int64)
    f1 = (f0 + 1) % T
    value = np.zeros(pts.shape[:2])
    for di in (0, 1):
        for dj in (0, 1):
            for dk in (0, 1):
                w = (np.where(di, frac[..., 0], 1 - frac[..., 0]) * np.where(dj, frac[..., 1], 1 - frac[..., 1])
                     * np.where(dk, frac[..., 2], 1 - frac[..., 2]))
                i, j, k = lo[..., 0] + di, lo[..., 1] + dj, lo[..., 2] + dk
                v0 = data[f0[:, None], k, j, i].astype(np.float64)
                v1 = data[f1[:, None], k, j, i].astype(np.float64)
                value += w * ((1 - wt) * v0 + wt * v1)
    if data.dtype == np.uint8:
        value /= 255.0
    value = np.where(inside, value, 0.0)
    return value.reshape((n,) + sector.shape).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# numba kernel


# Both memory layouts are addressed through separable tables: the element of voxel (t, k, j, i) is
# flat[t * frame_stride + kt[k] + jt[j] + it[i]]. The plain layout is Volume.data itself; the
# bricked one (PreparedVolume) stores 4 x 4 x 4 bricks of voxels contiguously (64 bytes of uint8,
# one cache line), so a slice at any orientation touches far fewer cache lines.

BRICK = 4
_CHUNK = 1024  # in-fan pixels per work item
# Below this many sampled points (about 12 slices of 128 x 128) one thread does the work: a parallel
# region costs little on an idle machine but can wait tens of ms for a descheduled worker on a busy one.
_PARALLEL_MIN_POINTS = 100_000
# The parallel kernels run only in the process that imported this module: numba's OpenMP layer
# kills a fork()ed child that starts a parallel region (e.g. a torch DataLoader worker), so forked
# children use the serial kernels (same code, same results).
_IMPORT_PID = os.getpid()


@numba.njit(cache=True, nogil=True)
def _slice_item(q, flat, frame_stride, it, jt, kt, dims, scale, o, ex, ez, f0, f1, wt, xs, zs, pix,
                out):  # pragma: no cover - compiled
    """Work item q = (slice n, chunk of _CHUNK in-fan pixels). flat: voxels in either layout; it, jt, kt:
    (X,), (Y,), (Z,) uint64 address tables, frame_stride uint64; dims: (Z, Y, X) int64; o, ex, ez: (N, 3)
    voxel units; f0, f1: (N,) uint64 frames, wt: (N,) weight of f1; xs, zs: (M,) in-fan pixels' probe
    x, z (mm), pix: (M,) uint64 their flat index; out: (N, H*W), zeroed (pixels left alone stay 0).
    Addresses are unsigned so that numba drops its negative-index wraparound checks (~15% faster)."""
    nz, ny, nx = dims[0], dims[1], dims[2]
    xmax, ymax, zmax = nx - 1.0, ny - 1.0, nz - 1.0
    m_pix = xs.shape[0]
    n_chunks = (m_pix + _CHUNK - 1) // _CHUNK
    n = q // n_chunks
    first = (q - n * n_chunks) * _CHUNK
    last = min(first + _CHUNK, m_pix)
    o0, o1, o2 = o[n, 0], o[n, 1], o[n, 2]
    a0, a1, a2 = ex[n, 0], ex[n, 1], ex[n, 2]
    b0, b1, b2 = ez[n, 0], ez[n, 1], ez[n, 2]
    w1 = wt[n]
    w0 = 1.0 - w1
    base0 = f0[n] * frame_stride
    base1 = f1[n] * frame_stride
    one = numba.uint64(1)
    row = out[n]
    for mm in range(first, last):
        m = numba.uint64(mm)
        x = xs[m]
        z = zs[m]
        fi = o0 + x * a0 + z * b0
        fj = o1 + x * a1 + z * b1
        fk = o2 + x * a2 + z * b2
        if fi < 0.0 or fj < 0.0 or fk < 0.0 or fi > xmax or fj > ymax or fk > zmax:
            continue  # outside the volume: stays 0
        ii = min(int(fi), nx - 2)
        jj = min(int(fj), ny - 2)
        kk = min(int(fk), nz - 2)
        u = fi - ii
        v = fj - jj
        w = fk - kk
        i0 = numba.uint64(ii)
        j0 = numba.uint64(jj)
        k0 = numba.uint64(kk)
        ia = it[i0]
        ib = it[i0 + one]
        r00 = jt[j0] + kt[k0]
        r10 = jt[j0 + one] + kt[k0]
        r01 = jt[j0] + kt[k0 + one]
        r11 = jt[j0 + one] + kt[k0 + one]
        acc = 0.0
        if w0 != 0.0:
            a = base0
            c00 = flat[a + r00 + ia] * (1.0 - u) + flat[a + r00 + ib] * u
            c10 = flat[a + r10 + ia] * (1.0 - u) + flat[a + r10 + ib] * u
            c01 = flat[a + r01 + ia] * (1.0 - u) + flat[a + r01 + ib] * u
            c11 = flat[a + r11 + ia] * (1.0 - u) + flat[a + r11 + ib] * u
            acc += w0 * ((c00 * (1.0 - v) + c10 * v) * (1.0 - w) + (c01 * (1.0 - v) + c11 * v) * w)
        if w1 != 0.0:
            a = base1
            c00 = flat[a + r00 + ia] * (1.0 - u) + flat[a + r00 + ib] * u
            c10 = flat[a + r10 + ia] * (1.0 - u) + flat[a + r10 + ib] * u
            c01 = flat[a + r01 + ia] * (1.0 - u) + flat[a + r01 + ib] * u
            c11 = flat[a + r11 + ia] * (1.0 - u) + flat[a + r11 + ib] * u
            acc += w1 * ((c00 * (1.0 - v) + c10 * v) * (1.0 - w) + (c01 * (1.0 - v) + c11 * v) * w)
        row[pix[m]] = acc * scale


@numba.njit(parallel=True, cache=True, nogil=True)
def _slice_parallel(n_items, flat, frame_stride, it, jt, kt, dims, scale, o, ex, ez, f0, f1, wt, xs, zs, pix,
                    out):  # pragma: no cover - compiled
    for q in numba.prange(n_items):
        _slice_item(q, flat, frame_stride, it, jt, kt, dims, scale, o, ex, ez, f0, f1, wt, xs, zs, pix, out)


@numba.njit(cache=True, nogil=True)
def _slice_serial(n_items, flat, frame_stride, it, jt, kt, dims, scale, o, ex, ez, f0, f1, wt, xs, zs, pix,
                  out):  # pragma: no cover - compiled
    for q in range(n_items):
        _slice_item(q, flat, frame_stride, it, jt, kt, dims, scale, o, ex, ez, f0, f1, wt, xs, zs, pix, out)


@numba.njit(cache=True, nogil=True)
def _brick_item(q, data, out, nbz, nby, nbx):  # pragma: no cover - compiled
    """Work item q = (frame t, brick layer bk): copy data (T, Z, Y, X) into out (flat): voxel (kk, jj, ii)
    of brick (bk, bj, bi) at t * frame_stride + ((bk * nby + bj) * nbx + bi) * 64 + kk * 16 + jj * 4 + ii;
    padding set to 0."""
    _, nz, ny, nx = data.shape
    frame_stride = nbz * nby * nbx * 64
    t = q // nbz
    bk = q - t * nbz
    for bj in range(nby):
        for bi in range(nbx):
            base = t * frame_stride + ((bk * nby + bj) * nbx + bi) * 64
            full = 4 * bk + 4 <= nz and 4 * bj + 4 <= ny and 4 * bi + 4 <= nx
            for kk in range(4):
                k = 4 * bk + kk
                for jj in range(4):
                    j = 4 * bj + jj
                    for ii in range(4):
                        i = 4 * bi + ii
                        if full or (k < nz and j < ny and i < nx):
                            out[base + kk * 16 + jj * 4 + ii] = data[t, k, j, i]
                        else:
                            out[base + kk * 16 + jj * 4 + ii] = 0


@numba.njit(parallel=True, cache=True, nogil=True)
def _brick_parallel(data, out, nbz, nby, nbx):  # pragma: no cover - compiled
    for q in numba.prange(data.shape[0] * nbz):
        _brick_item(q, data, out, nbz, nby, nbx)


@numba.njit(cache=True, nogil=True)
def _brick_serial(data, out, nbz, nby, nbx):  # pragma: no cover - compiled
    for q in range(data.shape[0] * nbz):
        _brick_item(q, data, out, nbz, nby, nbx)


def _may_run_parallel(points: int) -> bool:
    return points >= _PARALLEL_MIN_POINTS and os.getpid() == _IMPORT_PID and numba.get_num_threads() > 1


@dataclass(frozen=True, eq=False)
class PreparedVolume:
    """A volume re-laid out for fast slicing (4 x 4 x 4 voxel bricks); slices equal those of ``volume``.

    Made by :func:`prepare_volume` (a parallel copy: about as much memory again as ``volume.data``
    and tens of milliseconds for a phantom); worth it when many slices come from one volume.
    """

    volume: Volume
    bricks: np.ndarray          # flat, dtype of volume.data
    frame_stride: int
    tables: tuple               # (it (X,), jt (Y,), kt (Z,)) uint64 address tables


def prepare_volume(volume: Volume) -> PreparedVolume:
    """Bricked copy of ``volume`` for :func:`slice_batch` (same slices, faster when the volume is reused)."""
    if isinstance(volume, PreparedVolume):
        return volume
    if not isinstance(volume, Volume):
        raise SlicerError(f'volume: expected an echoposed_sim.volume.Volume, got {type(volume).__name__}')
    n_t, nz, ny, nx = volume.data.shape
    nbz, nby, nbx = (-(-n // BRICK) for n in (nz, ny, nx))
    frame_stride = nbz * nby * nbx * BRICK ** 3
    bricks = np.empty(n_t * frame_stride, dtype=volume.data.dtype)
    if _may_run_parallel(volume.data.size):
        with _KERNEL_LOCK:
            _brick_parallel(volume.data, bricks, nbz, nby, nbx)
    else:
        _brick_serial(volume.data, bricks, nbz, nby, nbx)
    i, j, k = np.arange(nx), np.arange(ny), np.arange(nz)
    it = (i // BRICK) * BRICK ** 3 + i % BRICK
    jt = (j // BRICK) * nbx * BRICK ** 3 + (j % BRICK) * BRICK
    kt = (k // BRICK) * nby * nbx * BRICK ** 3 + (k % BRICK) * BRICK ** 2
    return PreparedVolume(volume, bricks, int(frame_stride), (it.astype(np.uint64), jt.astype(np.uint64),
                                                             kt.astype(np.uint64)))


def _layout(volume: Volume | PreparedVolume) -> tuple[np.ndarray, np.uint64, tuple]:
    """(flat voxels, frame stride, (it, jt, kt)) of either layout; stride and tables uint64."""
    if isinstance(volume, PreparedVolume):
        return volume.bricks, np.uint64(volume.frame_stride), volume.tables
    data = volume.data
    if not data.flags.c_contiguous:
        raise SlicerError(f'{volume.name}: volume data must be C-contiguous for the fast slicer '
                          '(np.ascontiguousarray it once when building the Volume)')
    _, nz, ny, nx = data.shape
    return (data.reshape(-1), np.uint64(nz * ny * nx),
            (np.arange(nx, dtype=np.uint64), np.arange(ny, dtype=np.uint64) * np.uint64(nx),
             np.arange(nz, dtype=np.uint64) * np.uint64(nx * ny)))


def slice_batch(volume: Volume | PreparedVolume, orbits: ArrayLike, probes: ArrayLike, ts: ArrayLike,
                sector: SectorGeometry = DEFAULT_SECTOR, *, radius: float | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
    """N slices at once -> ``(N, H, W)`` float32 in [0, 1].

    volume: a :class:`Volume` (float32 [0, 1] or uint8, C-contiguous) or its :func:`prepare_volume`
    form (same result, faster); orbits, probes: ``(N, 3, 3)`` rotations ``R_v``, ``R_p`` (any
    gauge: the slice depends on ``R_v R_p`` and ``R_v e_z`` only); ts: ``(N,)`` cardiac phases in
    cycles (periodic); sector: fan and image size; radius: orbit radius override (mm, default
    ``volume.radius``); out: optional preallocated ``(N, H, W)`` float32 C-contiguous buffer.
    """
    vol = volume.volume if isinstance(volume, PreparedVolume) else volume
    o, ex, ez, f0, f1, wt, scale = _slice_params(vol, orbits, probes, ts, radius)
    result = _output(out, o.shape[0], sector)
    if o.shape[0] == 0:
        return result
    pix, xs, zs = _sector_tables(sector)
    flat, frame_stride, (it, jt, kt) = _layout(volume)
    dims = np.asarray(vol.data.shape[1:], dtype=np.int64)
    n_items = o.shape[0] * (-(-xs.size // _CHUNK))
    args = (n_items, flat, frame_stride, it, jt, kt, dims, np.float64(scale), o, ex, ez, f0.astype(np.uint64),
            f1.astype(np.uint64), wt, xs, zs, pix, result.reshape(o.shape[0], -1))
    if _may_run_parallel(o.shape[0] * xs.size):
        with _KERNEL_LOCK:
            _slice_parallel(*args)
    else:
        _slice_serial(*args)
    return result


def slice_volume(volume: Volume | PreparedVolume, orbit: ArrayLike, probe: ArrayLike, t: float,
                 sector: SectorGeometry = DEFAULT_SECTOR, *, radius: float | None = None) -> np.ndarray:
    """One slice ``(H, W)`` float32 in [0, 1] at pose ``(R_v, R_p)`` (each ``(3, 3)``) and phase ``t`` (cycles)."""
    orbit = np.asarray(orbit, dtype=np.float64)
    probe = np.asarray(probe, dtype=np.float64)
    if orbit.shape != (3, 3) or probe.shape != (3, 3):
        raise SlicerError(f'orbit and probe: expected (3, 3) rotation matrices, got shapes {orbit.shape} and '
                          f'{probe.shape} (use slice_batch for batches)')
    return slice_batch(volume, orbit[None], probe[None], np.array([t], dtype=np.float64), sector,
                       radius=radius)[0]


def warm_up() -> None:
    """Compile (or load from numba's on-disk cache) every kernel for uint8 and float32 volumes, both layouts."""
    many = max(2, -(-_PARALLEL_MIN_POINTS // DEFAULT_SECTOR.inside_index.size))  # enough for the parallel path
    eye = np.eye(3)[None].repeat(many, axis=0)
    for dtype in (np.uint8, np.float32):
        tiny = Volume(data=np.zeros((2, 2, 2, 2), dtype=dtype), spacing=np.ones(3), centre=np.full(3, 0.5),
                      radius=1.0, name='warm-up')
        for volume in (tiny, prepare_volume(tiny)):
            slice_batch(volume, eye[:1], eye[:1], np.zeros(1))          # serial
            slice_batch(volume, eye, eye, np.zeros(many))               # parallel (in the importing process)
        side = int(np.ceil(_PARALLEL_MIN_POINTS ** (1 / 3)))
        prepare_volume(Volume(data=np.zeros((1, side, side, side), dtype=dtype), spacing=np.ones(3),
                              centre=np.full(3, side / 2), radius=1.0, name='warm-up'))
