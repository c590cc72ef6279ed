"""echoposed eval threshold: the in-range vs no-heart sigma^2 table."""
from __future__ import annotations

import numpy as np
import pytest

from echoposed_sim.sector import SectorGeometry

from echoposed_ros.eval.threshold import ThresholdProtocol, noise_frames, threshold_table
from echoposed_ros.training.toy import toy_volume

SECTOR = SectorGeometry(angle_rad=np.deg2rad(75), depth_mm=60.0, height=32, width=32)


def test_noise_frames_stay_inside_the_sector_and_in_range():
    f = noise_frames(5, SECTOR, np.random.default_rng(0))
    assert f.shape == (5, 32, 32) and f.dtype == np.float32
    assert f.min() >= 0 and f.max() <= 1 and f.max() > 0.1
    assert not f[:, ~SECTOR.mask].any()


def test_table_counts_and_holds_what_it_should():
    vols = [toy_volume(k, n=20, frames=2, spacing=4.0) for k in (0, 1)]

    def predict(images):   # perfect poses are not known here: identity, sigma^2 high for noise-like frames
        n = len(images)
        eye = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
        rough = np.abs(np.diff(images, axis=-1)).mean((1, 2))
        return eye, eye, rough * 10
    p = ThresholdProtocol(slices_per_volume=9, noise_frames=7, thresholds=(0.0, 1e9))
    t = threshold_table(vols, predict, SECTOR, p)
    assert t['in_range']['n'] == 2 * 8 and t['no_heart']['n'] == 7
    first, last = t['rows']
    assert first['no_heart_held'] == 1.0 and last['no_heart_held'] == 0.0 and last['in_range_held'] == 0.0
    assert 0.0 <= t['good_share'] <= 1.0


def test_cli_names_a_missing_model(tmp_path, capsys):
    from echoposed_ros.cli import main
    rc = main(['eval', 'threshold', '--seeds', '1000', '--model', str(tmp_path / 'nope.onnx'),
               '--json', str(tmp_path / 't.json')])
    assert rc == 2 and 'nope.onnx' in capsys.readouterr().err
