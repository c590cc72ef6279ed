"""Training data: pose-time sampling (docs/method.md section 3, :func:`echoposed_sim.sampling.sample_poses`,
as the simulator and the evaluations draw them), on-the-fly slices with the project's
slicer, augmentation, and a DataLoader-ready stream that runs in worker processes.

Every batch is a pure function of ``(config.seed, step, rank)``: a resumed or re-run training
sees the same data. One batch = one volume's ``poses`` pose-time pairs, plus their left-right
mirrors (a mirror is the pose ``(R_v, R_p Rz(pi))``) once the curriculum has opened the full
circle about z.

Batch dict: ``image`` float32 (M, 1, H, W) in [0, 1] (0 outside the sector); ``orbit``,
``probe`` float64 (M, 3, 3) canonical-gauge pose; ``t`` float64 (M,) phase in cycles;
``volume`` int (index into the source); ``z_range`` float (rad, the curriculum's half-range); with a
teacher (``distill_weight`` > 0) also ``clean`` float32 (P M, 1, H, W): the same slices as the teacher
reads them (:meth:`VolumeSource.clean`, no augmentation, no resampling, no style), phase-major: block j
holds the poses at phase ``t + j / P`` (P = ``distill_phases``). Sweep batches have none: the teacher
keeps what the volumes taught, the patient's own frames are learnt freely.

Mixed sources (``volumes_dir`` and ``phantom_weight`` > 0): each step's volume is a phantom patient
with probability ``phantom_weight``, else a file of the folder, each uniform within its source;
the draw is deterministic in ``(seed, step, rank)`` too.

Adaptation sweeps (``sweep_file`` and ``sweep_weight`` > 0, :func:`sweep_batch`): with probability
``sweep_weight`` a step's batch is frames of one patient's recorded sweep, labelled with the arm's
relative poses (``volume`` -1, ``t`` NaN: the phase is unknown), instead of slices of a volume.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import signal
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from echoposed_ros.geometry import rot_z
from echoposed_sim.sampling import sample_poses
from echoposed_sim.sector import SectorGeometry
from echoposed_sim.slicer import slice_batch

from ..errors import EchoposedError
from . import TrainingError
from .config import TrainConfig, parse_seed_range, random_style_share

__all__ = ['BatchStream', 'Sweep', 'VolumeSource', 'augment', 'batches', 'load_sweep', 'loader', 'make_batch',
           'phantom_volume', 'resolve_style', 'seed_style', 'sweep_batch', 'volume_index', 'z_range']


class VolumeSource:
    """Volumes by index: phantom patients by seed, the files of a folder, or both; an LRU cache.

    With both (``volumes_dir`` and ``phantom_weight`` > 0) the files come first (indices
    ``0 .. n_files - 1``), then the phantom seeds, and :meth:`pick` draws a phantom with
    probability ``phantom_weight``. ``get(i)`` -> :class:`echoposed_sim.volume.Volume`;
    ``describe()`` -> JSON-able record of the data (seed range and style, the file list, or both
    with their weights) for checkpoints and model metadata.
    """

    def __init__(self, seeds: list[int] | None = None, style: str = '', volumes_dir: str = '',
                 cache: int = 32, factory=None, frames: int = 5, cache_dir: str = '', version: int = 0,
                 phantom_weight: float = 0.0, motion: str = 'default'):
        self.style, self.volumes_dir, self.cache_size, self.motion = style, volumes_dir, max(1, cache), motion
        self.frames, self.cache_dir, self.version = frames, cache_dir, version
        self._cache: OrderedDict[object, object] = OrderedDict()
        self._factory = factory
        if volumes_dir:
            folder = Path(volumes_dir)
            if not folder.is_dir():
                raise TrainingError(f'volumes_dir {volumes_dir!r}: not a folder')
            from echoposed_sim.volume_io import SUFFIXES, volume_files
            # Volume files only: a sidecar (heart.nii.gz.yaml) or a note beside them is not a volume.
            self.files = [str(p) for p in volume_files(folder) if not p.name.startswith('.')]
            if not self.files:
                raise TrainingError(f'volumes_dir {volumes_dir!r}: holds no volume files ({", ".join(SUFFIXES)})')
            if not 0 <= phantom_weight <= 1:
                raise TrainingError(f'phantom_weight {phantom_weight!r}: expected a probability in [0, 1]')
            if phantom_weight > 0 and not seeds:
                raise TrainingError(f'phantom_weight {phantom_weight}: give the phantom seeds to mix with the folder')
            self.seeds = list(seeds) if phantom_weight > 0 else None
            self.phantom_weight = float(phantom_weight)
        else:
            if not seeds:
                raise TrainingError('VolumeSource: give phantom seeds or a volumes_dir')
            self.seeds, self.files, self.phantom_weight = list(seeds), None, 1.0

    @classmethod
    def from_config(cls, cfg: TrainConfig, factory=None) -> VolumeSource:
        seeds = None if cfg.volumes_dir and not cfg.phantom_weight else parse_seed_range(cfg.train_seeds)
        return cls(seeds, cfg.phantom_style, cfg.volumes_dir, cfg.cache_volumes, factory,
                   cfg.phantom_frames, cfg.phantom_cache_dir, cfg.phantom_version, cfg.phantom_weight,
                   cfg.phantom_motion)

    @property
    def mixed(self) -> bool:
        """Both a folder's files and phantom patients."""
        return self.files is not None and self.seeds is not None

    def __len__(self) -> int:
        return len(self.files or ()) + len(self.seeds or ())

    def is_phantom(self, i: int) -> bool:
        """Whether volume ``i`` is a phantom patient (else a file of the folder)."""
        return i >= len(self.files or ())

    def pick(self, rng_volume: np.random.Generator, rng_source: np.random.Generator) -> int:
        """A volume index: when mixed, the source drawn from ``rng_source`` (a phantom with probability
        ``phantom_weight``), then a volume uniform within the source from ``rng_volume``; else a
        volume uniform over all (``rng_source`` unused, so unmixed runs keep their draws)."""
        if not self.mixed:
            return int(rng_volume.integers(len(self)))
        n_files = len(self.files)
        if rng_source.uniform() < self.phantom_weight:
            return n_files + int(rng_volume.integers(len(self.seeds)))
        return int(rng_volume.integers(n_files))

    def describe(self) -> dict:
        if self.mixed:
            return {'kind': 'mixed', 'sources': [{**self._describe_files(), 'weight': 1.0 - self.phantom_weight},
                                                 {**self._describe_phantoms(), 'weight': self.phantom_weight}]}
        return self._describe_files() if self.files is not None else self._describe_phantoms()

    def _describe_files(self) -> dict:
        return {'kind': 'files', 'dir': self.volumes_dir, 'files': [Path(f).name for f in self.files]}

    def _describe_phantoms(self) -> dict:
        lo, hi = min(self.seeds), max(self.seeds)
        contiguous = len(self.seeds) == hi - lo + 1
        return {'kind': 'phantom', 'seeds': f'{lo}-{hi}' if contiguous else self.seeds,
                'style': self.style or 'default', 'frames': self.frames,
                'generator_version': self._version(), **({'motion': self.motion} if self.motion != 'default' else {})}

    def _version(self) -> int:
        if self.version or self._factory is not None:
            return self.version
        from echoposed_sim import phantom
        return int(phantom.GENERATOR_VERSION)

    def _load(self, i: int):
        n_files = len(self.files or ())
        key = self.seeds[i - n_files] if self.is_phantom(i) else self.files[i]
        if self._factory is not None:
            return self._factory(key)
        if not self.is_phantom(i):
            from echoposed_sim.volume_io import load_volume
            return load_volume(key)
        return phantom_volume(key, self.style, self.frames, self.cache_dir, self.version, self.motion)

    def get(self, i: int):
        return self._cached(i, lambda: self._load(i))

    def clean(self, i: int):
        """Volume ``i`` as a teacher sees it (``distill_weight``): a phantom patient drawn in another style than
        the default one comes in the default style (same anatomy and motion: the style sets only the
        echo); anything else is ``get(i)`` itself."""
        if self._factory is not None or not self.is_phantom(i):
            return self.get(i)
        seed = self.seeds[i - len(self.files or ())]
        if not seed_style(seed, self.style):   # drawn in the default style (no style file read per step)
            return self.get(i)
        return self._cached(('clean', i), lambda: phantom_volume(seed, '', self.frames, self.cache_dir, self.version,
                                                               self.motion))

    def _cached(self, key, load):
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        vol = load()
        self._cache[key] = vol
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return vol


def seed_style(seed: int, style: str) -> str:
    """The style phantom ``seed`` is generated in: ``style``, except that ``'random:P'`` gives ``'random'`` for a
    share P of the seeds (drawn per seed, the same every time) and ``''`` (the default style) for the rest."""
    share = random_style_share(style)
    if share is None or share == 1.0:
        return style
    return 'random' if np.random.default_rng([int(seed), 0x5717E, 1]).uniform() < share else ''


def phantom_volume(seed: int, style: str = '', frames: int = 5, cache_dir: str = '', version: int = 0,
                   motion: str = 'default'):
    """make_phantom(seed, style, frames), kept as a pickle in ``cache_dir`` when one is given (a patient takes
    seconds to tens of seconds to generate on this machine). Style 'random': each seed in a scanner style of its
    own (``echoposed_sim.phantom.random_style``); 'random:P': a share P of them (:func:`seed_style`). Motion
    'wide': the seed's heart with its motion drawn wider (``echoposed_sim.phantom.wide_motion``).

    version: 0 = the current generator (GENERATOR_VERSION); N > 0 = only a cached patient made by
    generator version N (the generator changes; a pinned version keeps a training run's data fixed).
    Cache files are named by the style and, for any style but the default, its digest, so an edited style
    file or a changed random draw is generated again, never read stale.
    """
    from echoposed_sim import phantom
    style = seed_style(seed, style)
    resolved = resolve_style(style, seed)
    current = int(phantom.GENERATOR_VERSION)
    want = int(version) or current
    path = None
    if cache_dir:
        tag = 'default' if resolved is None else f'{Path(style).stem}-{resolved.digest()}'
        tag += '_wide' if motion == 'wide' else ''
        path = Path(cache_dir) / f'phantom_{tag}_{want}_f{frames}_{seed}.pkl'
        if path.is_file():
            try:
                with open(path, 'rb') as f:
                    return pickle.load(f)
            except (OSError, pickle.UnpicklingError, EOFError):
                pass
    if want != current:
        raise TrainingError(f'phantom seed {seed}: generator version {want} requested, but {path} is not '
                            f'in the cache and the installed generator is version {current}')
    vol = phantom.make_phantom(seed, resolved, frames,
                               heart=phantom.wide_motion(seed) if motion == 'wide' else None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f'.tmp{os.getpid()}')
        with open(tmp, 'wb') as f:
            pickle.dump(vol, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    return vol


def resolve_style(style: str, seed: int | None = None):
    """'' -> None (the default style); a shipped style name ('vendor_b') or a YAML path -> style; 'random' and
    'random:P' -> the style phantom ``seed`` is drawn in (:func:`seed_style`; TrainingError without a seed)."""
    from echoposed_sim import phantom
    if random_style_share(style) is not None:
        if seed is None:
            raise TrainingError(f'phantom_style {style!r}: a style per patient needs the patient seed')
        style = seed_style(seed, style)
        if style == 'random':
            return phantom.random_style(int(seed))
    if not style:
        return None
    path = Path(style)
    if not path.suffix:
        path = phantom.style_path(style)
    return phantom.load_style(path)


def z_range(cfg: TrainConfig, step: int) -> float:
    """Curriculum: half-range (rad) of the probe turn about z at ``step``, from z_start_deg to 180."""
    start = np.deg2rad(cfg.z_start_deg)
    if cfg.z_ramp_steps <= 0 or step >= cfg.z_ramp_steps:
        return float(np.pi)
    return float(start + (np.pi - start) * step / cfg.z_ramp_steps)


def _grey_remap(rng: np.random.Generator, img: np.ndarray, knots: int = 4) -> np.ndarray:
    """Random monotone piecewise-linear grey map of [0, 1] onto [0, 1] with f(0) = 0."""
    xs = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, knots)), [1.0]])
    ys = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, knots)), [rng.uniform(0.7, 1.0)]])
    return np.interp(img, xs, ys).astype(np.float32)


def augment(rng: np.random.Generator, images: np.ndarray, sector: SectorGeometry,
            cfg: TrainConfig) -> np.ndarray:
    """In place per image: sector-angle crop (symmetric, keeps fliplr = mirror pose) and a grey
    remap. images: (N, H, W) float32 [0, 1]."""
    _, phi = sector.polar
    for i in range(images.shape[0]):
        if rng.uniform() < cfg.aug_sector_crop:
            half = 0.5 * sector.angle_rad * rng.uniform(cfg.aug_sector_min, 1.0)
            images[i][np.abs(phi) > half] = 0.0
        if rng.uniform() < cfg.aug_grey:
            images[i] = _grey_remap(rng, images[i])
    return images


def resampled_like_runtime(images: np.ndarray, sector: SectorGeometry) -> np.ndarray:
    """(N, h, w) float slices of ``sector``'s fan at another size -> (N, H, W) float32 as the pose
    node would feed them to the model: 8-bit quantised (mono8), then mapped fan to fan by
    :func:`echoposed_ros.estimator.image.map_to_model` (bilinear, exact fans), so training also
    sees the runtime's quantisation and interpolation (on 128 px frames they moved an earlier
    model's estimates 1.2 deg, median, from the direct slice's; docs/experiments/estimator.md)."""
    from echoposed_ros.estimator.fan import model_fan
    from echoposed_ros.estimator.image import map_to_model
    from echoposed_ros.eval.frames import to_mono8

    n, h, w = images.shape
    src = model_fan(h, w, sector.angle_rad, sector.square_pixels)
    dst = model_fan(sector.height, sector.width, sector.angle_rad, sector.square_pixels)
    quantised = to_mono8(images) / 255.0
    return np.stack([map_to_model(im, src, dst, (sector.height, sector.width)) for im in quantised])


def volume_index(cfg: TrainConfig, source: VolumeSource, step: int, rank: int = 0) -> int:
    """The index (into ``source``) of the volume that ``step`` draws: deterministic in seed, step
    (by blocks of ``volume_reuse``) and rank, the source first when it is mixed."""
    block = step // max(1, cfg.volume_reuse)
    return source.pick(np.random.default_rng([cfg.seed, 7, block, rank]),
                       np.random.default_rng([cfg.seed, 13, block, rank]))


class Sweep:
    """A prepared adaptation sweep: ``images`` float32 (N, H, W) model inputs, ``orbit``, ``probe`` (N, 3, 3)
    labels relative to the sweep's start, ``hold`` (N,) int (frames held at one pose share a number, -1
    moving). ``partners[i]``: the frames that share frame i's hold (itself left out). ``holdout``: share of
    the holds kept out of training, spread evenly over the sweep; ``train`` and ``val`` index the frames
    the batches may draw and the frames of the held-out holds."""

    def __init__(self, images: np.ndarray, orbit: np.ndarray, probe: np.ndarray, hold: np.ndarray,
                 holdout: float = 0.0) -> None:
        self.images, self.orbit, self.probe, self.hold = images, orbit, probe, hold
        holds = [int(h) for h in np.unique(hold) if h >= 0]
        groups: dict[int, np.ndarray] = {h: np.flatnonzero(hold == h) for h in holds}
        self.partners = [groups[int(h)][groups[int(h)] != i] if h >= 0 else np.zeros(0, np.int64)
                         for i, h in enumerate(hold)]
        # hold n (in sweep order) is held out when the running share crosses a whole number there
        kept_out = [h for n, h in enumerate(holds) if int((n + 1) * holdout) > int(n * holdout)]
        out = np.isin(hold, kept_out)
        self.val, self.train = np.flatnonzero(out), np.flatnonzero(~out)

    def __len__(self) -> int:
        return len(self.images)


_SWEEPS: dict[tuple[str, float], Sweep] = {}


def load_sweep(path: str, input_size: int, holdout: float = 0.0) -> Sweep:
    """The prepared sweep at ``path`` with a share ``holdout`` of its holds kept out (kept per process);
    TrainingError naming the file and field."""
    if (path, holdout) in _SWEEPS:
        return _SWEEPS[(path, holdout)]
    try:
        with np.load(path, allow_pickle=False) as z:
            images, orbit, probe, hold = (z[k] for k in ('images', 'orbit', 'probe', 'hold'))
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(f'sweep_file {path}: cannot read a prepared sweep ({exc}); expected an .npz with '
                            'images, orbit, probe, hold (echoposed adapt writes it)') from None
    n = len(images)
    if images.shape != (n, input_size, input_size) or n < 2:
        raise TrainingError(f'sweep_file {path}: images {images.shape}; expected (N >= 2, {input_size}, '
                            f'{input_size}), the model input')
    if orbit.shape != (n, 3, 3) or probe.shape != (n, 3, 3) or hold.shape != (n,):
        raise TrainingError(f'sweep_file {path}: labels orbit {orbit.shape}, probe {probe.shape}, hold {hold.shape}; '
                            f'expected ({n}, 3, 3), ({n}, 3, 3), ({n},)')
    sweep = Sweep(images.astype(np.float32), orbit.astype(np.float64), probe.astype(np.float64),
                  hold.astype(np.int64), holdout)
    if len(sweep.train) < 2:
        raise TrainingError(f'sweep_file {path}: {len(sweep.train)} frame(s) left for training after holding out '
                            f'{holdout:.0%} of the holds; expected at least 2')
    _SWEEPS[(path, holdout)] = sweep
    return sweep


def sweep_batch(cfg: TrainConfig, sweep: Sweep, step: int, rank: int = 0, augmentation: bool = True) -> dict:
    """A batch of ``cfg.poses`` sweep frames and their mirrors: half drawn at random, each paired with a
    frame held at the same pose when there is one (another cardiac phase: phase invariance), else with
    the next frame drawn; only frames of ``sweep.train`` (the held-out holds are never drawn)."""
    rng = np.random.default_rng([cfg.seed, 19, step, rank])
    half = cfg.poses // 2
    pool = sweep.train
    first = pool[rng.choice(len(pool), size=min(half, len(pool)), replace=False)]
    second = [int(rng.choice(sweep.partners[i])) if len(sweep.partners[i]) else int(pool[rng.integers(len(pool))])
              for i in first]
    rest = pool[rng.integers(len(pool), size=cfg.poses - 2 * len(first))]
    idx = np.concatenate([first, second, rest]).astype(np.int64)
    images = sweep.images[idx].copy()
    R_v, R_p = sweep.orbit[idx], sweep.probe[idx]
    if augmentation:
        sector = SectorGeometry(np.deg2rad(cfg.sector_angle_deg), cfg.sector_depth_mm, cfg.input_size, cfg.input_size)
        images = augment(rng, images, sector, cfg)
    if cfg.mirrors:
        images = _with_mirrors(images)
        R_v = np.concatenate([R_v, R_v])
        R_p = np.concatenate([R_p, R_p @ rot_z(np.pi)])
    return {'image': np.ascontiguousarray(images[:, None], dtype=np.float32), 'orbit': R_v, 'probe': R_p,
            't': np.full(len(R_v), np.nan), 'volume': -1, 'z_range': float(np.pi), 'step': step}


def _with_mirrors(images: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (2N, H, W): the images, then their left-right mirrors."""
    return np.concatenate([images, images[:, :, ::-1]])


def _blocks_with_mirrors(blocks: list[np.ndarray] | None) -> list[np.ndarray] | None:
    return None if blocks is None else [_with_mirrors(b) for b in blocks]


def _put_clean(batch: dict, clean: list[np.ndarray] | None) -> dict:
    """``batch`` with ``clean``, the teacher's (N, H, W) blocks one after the other, when there are any."""
    if clean is not None:
        batch['clean'] = np.ascontiguousarray(np.concatenate(clean)[:, None], dtype=np.float32)
    return batch


def make_batch(cfg: TrainConfig, source: VolumeSource, step: int, rank: int = 0,
               augmentation: bool = True) -> dict:
    """The training batch of ``step`` (deterministic in seed, step, rank); see the module doc."""
    # (the sweep draw has its own generator: configs without a sweep keep their batches)
    if cfg.sweep_weight > 0 and np.random.default_rng([cfg.seed, 17, step, rank]).uniform() < cfg.sweep_weight:
        return sweep_batch(cfg, load_sweep(cfg.sweep_file, cfg.input_size, cfg.sweep_holdout), step, rank,
                           augmentation)
    v_index = volume_index(cfg, source, step, rank)
    rng = np.random.default_rng([cfg.seed, 11, step, rank])
    vol = source.get(v_index)
    zh = z_range(cfg, step)
    R_v, R_p = sample_poses(rng, cfg.poses, vol.base_orbit, vol.base_probe, orbit_max=np.deg2rad(cfg.orbit_deg),
                            tilt_max=np.deg2rad(cfg.tilt_deg), turn_max=zh, turn_clusters=cfg.turn_clusters,
                            cluster_width=np.deg2rad(cfg.cluster_deg))
    ts = rng.uniform(0, 1, cfg.poses)
    n_twins = int(cfg.phase_pairs * cfg.poses)
    if n_twins:   # the last poses repeat the first ones at new phases (own generator: other configs keep their draws)
        R_v[-n_twins:], R_p[-n_twins:] = R_v[:n_twins], R_p[:n_twins]
        ts[-n_twins:] = np.random.default_rng([cfg.seed, 29, step, rank]).uniform(0, 1, n_twins)
    zoom = rng.uniform(1 - cfg.aug_zoom, 1 + cfg.aug_zoom) if augmentation else 1.0
    sector = SectorGeometry(np.deg2rad(cfg.sector_angle_deg), cfg.sector_depth_mm * zoom,
                            cfg.input_size, cfg.input_size)
    # (draws for aug_resample only when it is on: configs without it keep their batches)
    resampled = augmentation and cfg.aug_resample > 0 and rng.uniform() < cfg.aug_resample
    if resampled:
        size = int(round(cfg.input_size * rng.uniform(1.0, cfg.aug_resample_max)))
        images = resampled_like_runtime(slice_batch(vol, R_v, R_p, ts, replace(sector, height=size, width=size)),
                                        sector)
    else:
        images = slice_batch(vol, R_v, R_p, ts, sector)
    clean = None
    if cfg.distill_weight > 0:   # the teacher's view: the same slices, direct, of the patient in the default style
        clean_vol = source.clean(v_index)
        clean = [images.copy() if j == 0 and clean_vol is vol and not resampled else
                 slice_batch(clean_vol, R_v, R_p, (ts + j / cfg.distill_phases) % 1.0, sector)
                 for j in range(cfg.distill_phases)]
    # (its own generator, drawn only when on: configs without it keep their batches)
    style_rng = np.random.default_rng([cfg.seed, 23, step, rank])
    if augmentation and cfg.aug_style > 0 and style_rng.uniform() < cfg.aug_style:
        from .appearance import apply_style, random_style
        images = apply_style(style_rng, images, sector, random_style(style_rng))
    if augmentation:
        images = augment(rng, images, sector, cfg)
    if cfg.mirrors and zh >= np.pi:
        images, clean = _with_mirrors(images), _blocks_with_mirrors(clean)
        R_v = np.concatenate([R_v, R_v])
        R_p = np.concatenate([R_p, R_p @ rot_z(np.pi)])
        ts = np.concatenate([ts, ts])
    batch = {'image': np.ascontiguousarray(images[:, None], dtype=np.float32), 'orbit': R_v,
             'probe': R_p, 't': ts, 'volume': v_index, 'z_range': zh, 'step': step}
    return _put_clean(batch, clean)


class BatchStream(torch.utils.data.IterableDataset):
    """Batches for steps ``start, start + 1, ...`` (up to ``stop``), split round-robin across
    DataLoader workers so that a DataLoader(batch_size=None) yields them in step order."""

    def __init__(self, cfg: TrainConfig, start: int, stop: int, rank: int = 0, factory=None):
        self.cfg, self.start, self.stop, self.rank, self.factory = cfg, start, stop, rank, factory

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None:
            # Ctrl-C and `pkill -f` reach the whole process group: the training process stops after
            # the step under way and then ends its workers itself (train._stop_requests).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            torch.set_num_threads(1)
            try:
                import numba
                numba.set_num_threads(1)
            except (ImportError, ValueError):
                pass
        # Bad data (an EchoposedError: a volume file that cannot be read, ...) is passed on as a
        # record {'error', 'step'}, which the training loop turns into one TrainingError after it
        # has ended the workers; any other exception is a bug and keeps its traceback.
        step = self.start + wid
        try:
            source = VolumeSource.from_config(self.cfg, self.factory)
            for step in range(self.start + wid, self.stop, nw):
                b = make_batch(self.cfg, source, step, self.rank)
                yield {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in b.items()}
        except EchoposedError as exc:
            yield {'error': str(exc), 'step': step}


def loader(cfg: TrainConfig, start: int, stop: int, rank: int = 0, factory=None, pin_memory: bool = False):
    """A DataLoader over :class:`BatchStream` with ``cfg.workers`` worker processes (0 = inline);
    pin_memory: batches in page-locked memory (a CUDA run copies them with ``non_blocking``)."""
    return torch.utils.data.DataLoader(BatchStream(cfg, start, stop, rank, factory), batch_size=None,
                                       num_workers=cfg.workers, prefetch_factor=4 if cfg.workers else None,
                                       persistent_workers=False, pin_memory=pin_memory)


@contextlib.contextmanager
def batches(cfg: TrainConfig, start: int, stop: int, rank: int = 0, factory=None,
            pin_memory: bool = False) -> Iterator[Iterator[dict]]:
    """The batches of :func:`loader` for steps ``start..stop-1``, whose worker processes are ended
    when the block ends, however it ends. A record holding bad data raises :class:`TrainingError`.

    The workers ignore SIGINT and SIGTERM (the training process stops after its step and ends
    them), so they must not outlive an error in the training process: left to interpreter exit,
    multiprocessing's SIGTERM would not end them and its join would wait for good.
    """
    it = iter(loader(cfg, start, stop, rank, factory, pin_memory))

    def checked() -> Iterator[dict]:
        for batch in it:
            if 'error' in batch:
                raise TrainingError(f'data for step {batch["step"]}: {batch["error"]}')
            yield batch

    try:
        yield checked()
    finally:
        _end_workers(it)


def _end_workers(it: Any) -> None:
    """Stop a DataLoader iterator's worker processes now (torch's own shutdown, then SIGKILL for
    any that is still alive: they ignore SIGTERM)."""
    shutdown = getattr(it, '_shutdown_workers', None)   # torch's multi-process iterator; absent inline
    if shutdown is None:
        return
    shutdown()
    for w in getattr(it, '_workers', []):
        if w.is_alive():
            w.kill()
            w.join(timeout=5.0)
