"""On-disk cache of phantom patients with a bounded in-memory LRU.

Each patient is written once to ``<dir>/phantom_<seed>_<key>.npz`` (``volume_io.save_volume``)
where ``key`` hashes everything that changes its bytes: seed, style digest, frames, extent, heart
overrides and the generator version. Later requests load the file; at most ``max_in_memory`` volumes stay in
memory (least recently used dropped first), so a run over hundreds of patients stays bounded
(default style: ~73 MB per patient in memory).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path

from ..volume import Volume, VolumeError
from ..volume_io import load_volume, save_volume
from .errors import PhantomError
from .generate import DEFAULT_EXTENT_MM, GENERATOR_VERSION, make_phantom
from .style import AcquisitionStyle, default_style

__all__ = ['PhantomCache']

_log = logging.getLogger(__name__)


class PhantomCache:
    """Phantom patients by seed: memory (LRU, at most ``max_in_memory``) -> disk -> generate.

    directory: cache folder (created); style: acquisition style (default: default.yaml);
    frames, extent_mm, heart: as for :func:`make_phantom`; compress: zlib-compress the files (speckle
    compresses badly: ~18 % smaller, ~5x slower to read, ~18x slower to write; off by default).
    Counters ``hits``, ``loads``, ``generated`` say where volumes came from.
    """

    def __init__(self, directory: str | Path, max_in_memory: int = 4, style: AcquisitionStyle | None = None,
                 frames: int = 20, extent_mm: tuple[float, float, float] = DEFAULT_EXTENT_MM,
                 compress: bool = False, heart: dict | None = None) -> None:
        if isinstance(max_in_memory, bool) or not isinstance(max_in_memory, int) or max_in_memory < 0:
            raise PhantomError(f'PhantomCache max_in_memory must be an integer >= 0, got {max_in_memory!r}')
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_in_memory = max_in_memory
        self.style = default_style() if style is None else style
        self.frames = int(frames)
        self.extent_mm = tuple(float(e) for e in extent_mm)
        self.compress = bool(compress)
        self.heart = dict(heart or {})
        self._memory: OrderedDict[int, Volume] = OrderedDict()
        self.hits = self.loads = self.generated = 0

    def key(self, seed: int) -> str:
        """Hex digest of everything that determines the patient's bytes."""
        text = json.dumps({'seed': int(seed), 'style': self.style.digest(), 'frames': self.frames,
                           'extent_mm': self.extent_mm, 'version': GENERATOR_VERSION,
                           'heart': self.heart}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def path(self, seed: int) -> Path:
        """Cache file of patient ``seed``."""
        return self.directory / f'phantom_{int(seed)}_{self.key(seed)}.npz'

    def __contains__(self, seed: int) -> bool:
        return int(seed) in self._memory or self.path(seed).is_file()

    @property
    def in_memory(self) -> list[int]:
        """Seeds held in memory, least recently used first."""
        return list(self._memory)

    @property
    def memory_bytes(self) -> int:
        """Bytes of volume data held in memory."""
        return sum(v.data.nbytes for v in self._memory.values())

    def clear_memory(self) -> None:
        self._memory.clear()

    def get(self, seed: int) -> Volume:
        """The patient ``seed`` (a Volume equal to ``make_phantom(seed, style, frames, extent)``)."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise PhantomError(f'phantom seed must be a non-negative integer, got {seed!r}')
        if seed in self._memory:
            self._memory.move_to_end(seed)
            self.hits += 1
            return self._memory[seed]
        path = self.path(seed)
        volume = None
        if path.is_file():
            try:
                volume = load_volume(path, normalise='none', sidecar=False)
                volume.meta.pop('file', None)
                self.loads += 1
            except VolumeError as err:
                _log.warning('phantom cache: %s is unreadable (%s); generating it again', path, err)
        if volume is None:
            volume = make_phantom(seed, self.style, self.frames, self.extent_mm, heart=self.heart or None)
            tmp = path.with_name(f'.{path.stem}.{os.getpid()}.tmp.npz')
            save_volume(volume, tmp, compress=self.compress)
            os.replace(tmp, path)
            self.generated += 1
        if self.max_in_memory > 0:
            self._memory[seed] = volume
            while len(self._memory) > self.max_in_memory:
                self._memory.popitem(last=False)
        return volume

    __getitem__ = get
