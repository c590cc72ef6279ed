"""echoposed eval threshold: the in-range vs no-heart sigma^2 table."""
from __future__ import annotations

import numpy as np

from echoposed_ros.eval.threshold import ThresholdProtocol, noise_frames, threshold_table
from echoposed_ros.training.toy import toy_volume
from echoposed_sim.sector import SectorGeometry

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


def test_cli_with_frame_size_feeds_mono8_frames_of_that_size(tmp_path, capsys, monkeypatch):
    import json

    from echoposed_ros.cli import main
    from echoposed_ros.estimator import Estimator
    from echoposed_ros.estimator.synthetic import write_model
    from echoposed_sim import phantom
    from echoposed_sim.volume import Volume
    model = write_model(tmp_path / 'syn.onnx', np.stack([np.eye(3)] * 3), np.stack([np.eye(3)] * 3), gain=2.0)
    rng = np.random.default_rng(2)
    vol = Volume(data=rng.random((1, 20, 20, 20)).astype(np.float32), spacing=np.full(3, 9.0),
                 centre=np.full(3, 85.0), radius=60.0, name='phantom:1')
    monkeypatch.setattr(phantom.PhantomCache, 'get', lambda self, seed: vol)
    seen = set()
    real = Estimator.estimate_batch

    def spy(self, images, encodings=None, names=None):
        seen.update((im.dtype.name, im.shape) for im in images)
        return real(self, images, encodings, names)
    monkeypatch.setattr(Estimator, 'estimate_batch', spy)
    out = tmp_path / 't.json'
    rc = main(['eval', 'threshold', '--seeds', '1', '--cache', str(tmp_path / 'pc'), '--model', str(model),
               '--slices', '4', '--noise-frames', '3', '--frame-size', '72', '--threads', '1', '--json', str(out)])
    assert rc == 0, capsys.readouterr().err
    assert seen == {('uint8', (72, 72))}
    doc = json.loads(out.read_text())
    assert doc['frame_size'] == 72 and doc['in_range']['n'] == 3 and doc['no_heart']['n'] == 3
    rc = main(['eval', 'threshold', '--seeds', '1', '--model', str(model), '--frame-size', '-1', '--json', str(out)])
    assert rc == 2 and 'frame_size = -1; expected 0' in capsys.readouterr().err
