"""A saved view as a target: the frames of a bag between two times (a cine loop of one cycle).

:func:`read_clip` returns the images of one topic whose bag (receive) times fall in
``[start_s, start_s + seconds)`` from the bag's start, as float ``(H, W)`` intensities in [0, 1],
in order; only the clip's frames are decoded and kept, so a long recording costs no memory. The
target node hands them to the controller as ``SetTarget.cine``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..estimator.image import image_to_float
from .errors import BagError
from .reader import iter_image_batches, read_bag

__all__ = ['MAX_CLIP_FRAMES', 'read_clip']

#: The most frames a clip may hold (a few cycles at 30 Hz); a longer one is refused, not cut.
MAX_CLIP_FRAMES = 120


def read_clip(path: str | Path, start_s: float, seconds: float, topic: str | None = None) -> list[np.ndarray]:
    """Frames of ``topic`` (None: the bag's image topic) from ``start_s`` for ``seconds`` (s from the bag's
    start); BagError naming the bag and the window when it holds none, or more than ``MAX_CLIP_FRAMES``,
    or frames of different sizes."""
    if not (math.isfinite(start_s) and start_s >= 0 and math.isfinite(seconds) and seconds > 0):
        raise BagError(f'{path}: clip from {start_s!r} s for {seconds!r} s; expected a start >= 0 s and a '
                       'length > 0 s')
    bag = read_bag(path, topic, load_images=False)   # receive times only: the window is found without decoding
    t = (bag.images.times - bag.start_ns) * 1e-9
    pick = np.flatnonzero((t >= start_s) & (t < start_s + seconds))
    where = f'{path}: {bag.images.topic} from {start_s:g} s for {seconds:g} s'
    if pick.size == 0:
        raise BagError(f'{where}: no frame there (the bag lasts {bag.duration_s:.1f} s, {len(t)} frames)')
    if pick.size > MAX_CLIP_FRAMES:
        raise BagError(f'{where}: {pick.size} frames; expected at most {MAX_CLIP_FRAMES} (one cardiac cycle)')
    frames: list[np.ndarray] = []
    first, index = int(pick[0]), 0
    for arrays, encodings, _ in iter_image_batches(path, bag.images.topic):   # one batch in memory at a time
        for array, encoding in zip(arrays, encodings):
            if first <= index < first + pick.size:
                frames.append(image_to_float(array, encoding, f'{bag.images.topic}[{index}]'))
            index += 1
        if index >= first + pick.size:
            break
    if len({f.shape for f in frames}) > 1:
        raise BagError(f'{where}: frames of different sizes {sorted({f.shape for f in frames})}')
    return frames
