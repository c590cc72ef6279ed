"""A target cine from a bag clip: the frames in the window, in order, as float intensities; errors that
name the bag and the window."""
from __future__ import annotations

import numpy as np
import pytest
from bag_helpers import write_image_bag as write_bag

from echoposed_ros.bag.clip import MAX_CLIP_FRAMES, read_clip
from echoposed_ros.bag.errors import BagError


def test_the_clip_holds_the_frames_of_its_window_in_order(tmp_path):
    bag = write_bag(tmp_path / 'b', 60)
    frames = read_clip(bag, 0.5, 1.0)
    values = [int(round(f[0, 0] * 255)) for f in frames]
    assert values == list(range(15, 45))          # 0.5 s to 1.5 s at 30 Hz
    assert all(f.shape == (8, 8) and f.dtype == np.float32 for f in frames)


def test_a_window_without_frames_or_with_too_many_is_refused_naming_it(tmp_path):
    bag = write_bag(tmp_path / 'b', 10)
    with pytest.raises(BagError, match=r'from 5 s for 1 s: no frame there'):
        read_clip(bag, 5.0, 1.0)
    with pytest.raises(BagError, match='expected a start >= 0 s'):
        read_clip(bag, -1.0, 1.0)
    long = write_bag(tmp_path / 'long', MAX_CLIP_FRAMES + 5)
    with pytest.raises(BagError, match=f'expected at most {MAX_CLIP_FRAMES}'):
        read_clip(long, 0.0, 10.0)
