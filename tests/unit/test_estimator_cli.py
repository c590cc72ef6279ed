"""``echoposed estimate`` and ``echoposed eval calibration`` on tiny files in tmp_path."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from echoposed_ros.cli import main
from echoposed_ros.estimator import Estimator, FanGeometry, model_fan
from echoposed_ros.estimator import model as model_module
from echoposed_ros.estimator.synthetic import write_model
from echoposed_ros.geometry import quat_xyzw_to_matrix
from echoposed_sim import phantom
from echoposed_sim import volume as volume_mod

K = 5
ANGLE = math.radians(75.0)


@pytest.fixture(scope='module')
def model_path(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp('m') / 'ens.onnx', Rotation.random(K, random_state=1).as_matrix(),
                       Rotation.random(K, random_state=2).as_matrix(), gain=3.0)


def scene(shape, fan):
    x, z = fan.plane_coords(shape)
    return np.where(fan.mask(shape), 0.2 + 0.6 * z + 0.1 * np.cos(7 * x), 0.0)


def test_estimate_images_and_folders(tmp_path, model_path, capsys):
    folder = tmp_path / 'frames'
    folder.mkdir()
    grey = scene((64, 64), model_fan(64, 64, ANGLE))
    np.save(folder / 'a.npy', grey.astype(np.float32))
    Image.fromarray(np.round(grey * 255).astype(np.uint8)).save(folder / 'b.png')
    rgb = np.repeat(np.round(grey * 255).astype(np.uint8)[..., None], 3, axis=2)
    Image.fromarray(rgb).save(folder / 'c.jpg', quality=98)
    (folder / 'notes.txt').write_text('not an image')
    big = scene((200, 240), FanGeometry.square(-4.0, 119.5, ANGLE, 190.0))
    Image.fromarray(np.round(big * 65535).astype(np.uint16)).save(tmp_path / 'scanner16.png')
    out = tmp_path / 'out' / 'est.json'
    rc = main(['estimate', str(folder), str(tmp_path / 'scanner16.png'), '--json', str(out),
               '--model', str(model_path)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc['members'] == K and doc['quaternion_order'] == 'x, y, z, w'
    rows = doc['images']
    assert [r['path'].rsplit('/', 1)[-1] for r in rows] == ['a.npy', 'b.png', 'c.jpg', 'scanner16.png']
    assert [r['encoding'] for r in rows] == ['32FC1', 'mono8', 'rgb8', 'mono16']
    ref = Estimator(model_path).estimate(grey.astype(np.float32))
    for r in rows:
        q = np.array(r['probe_xyzw'])
        assert np.linalg.norm(q) == pytest.approx(1.0) and q[3] >= 0
        R = quat_xyzw_to_matrix(q)
        # same scene everywhere: estimates agree within a degree (quantisation, JPEG, resampling)
        assert np.degrees(Rotation.from_matrix(R.T @ ref.probe).magnitude()) < 1.0, r['path']
        assert r['sigma2'] == pytest.approx(ref.sigma2, rel=0.05)
    assert rows[3]['fan']['angle_rad'] == pytest.approx(ANGLE, abs=math.radians(1))
    np.testing.assert_allclose(rows[0]['probe_xyzw'], ref.probe_xyzw, atol=1e-9)
    assert 'wrote 4 estimate(s)' in capsys.readouterr().out


def test_missing_shipped_model_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(model_module, 'default_model_path', lambda: tmp_path / 'models' / 'echoposed_k5.onnx')
    np.save(tmp_path / 'a.npy', np.zeros((64, 64), np.float32))
    rc = main(['estimate', str(tmp_path / 'a.npy'), '--json', str(tmp_path / 'o.json')])
    err = capsys.readouterr().err
    assert rc == 2
    assert 'echoposed_k5.onnx' in err and 'has not been trained' in err and '--model' in err
    assert err.count('\n') == 1
    assert not (tmp_path / 'o.json').exists()


@pytest.mark.parametrize('make, expected', [
    (lambda d: d / 'missing.png', 'no such file or folder'),
    (lambda d: (d / 'empty').mkdir() or d / 'empty', 'holds no image files'),
    (lambda d: (d / 'x.png').write_bytes(b'garbage') and d / 'x.png', 'not a readable image'),
    (lambda d: np.save(d / 'i.npy', np.zeros((4, 4), np.int64)) or d / 'i.npy', 'cannot tell its encoding'),
])
def test_bad_inputs_are_one_line_errors(tmp_path, model_path, capsys, make, expected):
    path = make(tmp_path)
    rc = main(['estimate', str(path), '--json', str(tmp_path / 'o.json'), '--model', str(model_path)])
    err = capsys.readouterr().err
    assert rc == 2 and expected in err and str(path) in err and err.count('\n') == 1


def test_eval_calibration_on_volume_files(tmp_path, model_path, monkeypatch, capsys):
    """The command end to end, volumes from a folder (the loader is the simulator's)."""
    from echoposed_ros.cli import eval_calibration

    rng = np.random.default_rng(0)
    vols = [volume_mod.Volume(data=rng.random((1, 24, 24, 24)).astype(np.float32), spacing=np.full(3, 8.0),
                              centre=np.full(3, 92.0), radius=60.0, name=f'vol{i}') for i in range(2)]
    folder = tmp_path / 'vols'
    folder.mkdir()
    for v in vols:
        (folder / f'{v.name}.npz').write_bytes(b'')
    monkeypatch.setattr(eval_calibration, '_loaded', lambda files: iter(vols))
    out = tmp_path / 'cal.json'
    rc = main(['eval', 'calibration', '--volumes', str(folder), '--json', str(out), '--model', str(model_path),
               '--plots', str(tmp_path / 'plots'), '--z-step-deg', '30', '--tilt-step-deg', '10'])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc['source']['volume_files'][0].endswith('vol0.npz')
    for axis in 'xyz':
        assert math.isfinite(doc['axes'][axis]['maae_deg'])
        assert doc['axes'][axis]['normalized_maae'] is not None
    assert doc['axes']['z']['slices'] == 2 * 12 and doc['axes']['x']['slices'] == 2 * 7
    assert doc['mean_sigma2'] > 0
    assert (tmp_path / 'plots' / 'calibration.png').stat().st_size > 10_000
    assert sum(b['slices'] for b in doc['axes']['x']['maae_by_turn_deg']) == 2 * 7
    printed = capsys.readouterr().out
    assert 'normalised MAAE x / y / z' in printed
    assert 'MAAE about x by |applied turn| (deg): 0-10: ' in printed


def test_eval_calibration_prints_sign_flips_of_a_tilt_band():
    from echoposed_ros.cli.eval_calibration import _band
    assert _band({'lo_deg': 20.0, 'hi_deg': 30.0, 'maae_deg': 14.15, 'sign_flip_share': 0.136}) == \
        '20-30: 14.2 (14 % sign flips)'
    assert _band({'lo_deg': 0.0, 'hi_deg': 10.0, 'maae_deg': 1.7, 'sign_flip_share': 0.0}) == '0-10: 1.7'
    assert _band({'lo_deg': 0.0, 'hi_deg': 45.0, 'maae_deg': None}) == '0-45: n/a'


def test_eval_threshold_rejects_a_frame_size_too_small_to_hold_a_fan(tmp_path, model_path, capsys):
    rc = main(['eval', 'threshold', '--seeds', '1', '--frame-size', '8', '--json', str(tmp_path / 'c.json'),
               '--model', str(model_path)])
    assert rc == 2
    assert 'frame_size = 8; expected 0' in capsys.readouterr().err
    assert not (tmp_path / 'c.json').exists()


def test_eval_calibration_reports_bad_seeds(tmp_path, model_path, capsys):
    rc = main(['eval', 'calibration', '--seeds', '9-3', '--json', str(tmp_path / 'c.json'),
               '--model', str(model_path)])
    assert rc == 2 and "--seeds '9-3'" in capsys.readouterr().err


def test_eval_calibration_on_phantom_seeds_with_a_style(tmp_path, model_path, monkeypatch, capsys):
    """--seeds and --style reach the phantom generator (stubbed: a real patient takes ~15 s)."""
    calls = []

    def fake_make_phantom(seed, style=None):
        calls.append((seed, style))
        rng = np.random.default_rng(seed)
        return volume_mod.Volume(data=rng.random((1, 20, 20, 20)).astype(np.float32), spacing=np.full(3, 9.0),
                                 centre=np.full(3, 85.0), radius=60.0, name=f'phantom:{seed}')
    monkeypatch.setattr(phantom, 'make_phantom', fake_make_phantom)
    out = tmp_path / 'cal.json'
    rc = main(['eval', 'calibration', '--seeds', '7-8', '--style', 'vendor_b', '--cache', '', '--json', str(out),
               '--model', str(model_path), '--z-step-deg', '45', '--tilt-step-deg', '15'])
    assert rc == 0, capsys.readouterr().err
    assert [c[0] for c in calls] == [7, 8]
    assert calls[0][1] == phantom.load_style(phantom.style_path('vendor_b'))
    doc = json.loads(out.read_text())
    assert doc['source'] == {'phantom_seeds': [7, 8], 'style': 'vendor_b'}
    assert [v['name'] for v in doc['volumes']] == ['phantom:7', 'phantom:8']


def test_eval_calibration_reads_phantoms_through_the_cache(tmp_path, model_path, monkeypatch, capsys):
    made = []

    def get(self, seed):
        made.append((self.directory, seed, self.max_in_memory))
        return volume_mod.Volume(data=np.zeros((1, 8, 8, 8), np.float32), spacing=np.full(3, 20.0),
                                 centre=np.full(3, 70.0), radius=60.0, name=f'phantom:{seed}')
    monkeypatch.setattr(phantom.PhantomCache, 'get', get)
    rc = main(['eval', 'calibration', '--seeds', '3', '--cache', str(tmp_path / 'pc'), '--json',
               str(tmp_path / 'c.json'), '--model', str(model_path), '--z-step-deg', '90', '--tilt-step-deg', '30'])
    assert rc == 0, capsys.readouterr().err
    assert made == [(tmp_path / 'pc', 3, 1)]


def test_eval_calibration_bad_style_is_one_line(tmp_path, model_path, capsys):
    rc = main(['eval', 'calibration', '--seeds', '1', '--style', str(tmp_path / 'nope.yaml'),
               '--json', str(tmp_path / 'c.json'), '--model', str(model_path)])
    err = capsys.readouterr().err
    assert rc == 2 and 'nope.yaml' in err and err.count('\n') == 1


def test_predict_frames_is_the_pose_nodes_path_for_mono8_frames(model_path):
    """8-bit quantisation, then the estimator's own mapping: at the model's size, fan 'model',
    that is the quantised image through ``predict`` unchanged."""
    from echoposed_ros.eval.frames import predict_frames

    est = Estimator(model_path, fan='model', intra_op_threads=1)
    h, w = est.input_shape
    frames = np.stack([scene((h, w), model_fan(h, w, est.model.info.sector_angle_rad)) * s for s in (0.5, 1.0)])
    o, p, s2 = predict_frames(est, frames)
    o2, p2, s22 = est.predict(np.round(frames * 255) / 255)
    np.testing.assert_allclose(o, o2, atol=1e-6)
    np.testing.assert_allclose(p, p2, atol=1e-6)
    np.testing.assert_allclose(s2, s22, atol=1e-9)


def test_eval_calibration_with_larger_frames_maps_them_like_the_pose_node(tmp_path, model_path, monkeypatch, capsys):
    rng = np.random.default_rng(4)
    vol = volume_mod.Volume(data=rng.random((1, 20, 20, 20)).astype(np.float32), spacing=np.full(3, 9.0),
                            centre=np.full(3, 85.0), radius=60.0, name='phantom:5')
    monkeypatch.setattr(phantom.PhantomCache, 'get', lambda self, seed: vol)
    sizes = []
    real = Estimator.estimate_batch

    def spy(self, images, encodings=None, names=None):
        sizes.extend({im.shape for im in images})
        assert encodings is not None and set(encodings) == {'mono8'}
        return real(self, images, encodings, names)
    monkeypatch.setattr(Estimator, 'estimate_batch', spy)
    out = tmp_path / 'c.json'
    rc = main(['eval', 'calibration', '--seeds', '5', '--cache', str(tmp_path / 'pc'), '--json', str(out),
               '--model', str(model_path), '--frame-size', '80', '--z-step-deg', '90', '--tilt-step-deg', '30'])
    assert rc == 0, capsys.readouterr().err
    assert set(sizes) == {(80, 80)}
    assert json.loads(out.read_text())['frame_size'] == 80
    rc = main(['eval', 'calibration', '--seeds', '5', '--json', str(out), '--model', str(model_path),
               '--frame-size', '8'])
    assert rc == 2 and 'frame_size = 8; expected 0' in capsys.readouterr().err
