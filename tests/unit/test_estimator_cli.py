"""``echoposed estimate`` and ``echoposed eval calibration`` on tiny files in tmp_path."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from echoposed_ros.cli import main
from echoposed_ros.cli.estimate import probe_turns_deg
from echoposed_ros.cli.eval_guidance import load_controller_config
from echoposed_ros.config.pose import pose_config_from_yaml
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


def node_estimator(model_path, pose_yaml=None, **overrides):
    """The estimator as the pose node builds it (PoseNodeConfig from its YAML, no rclpy)."""
    config = pose_config_from_yaml(pose_yaml)
    return Estimator(model_path, **(config.estimator_kwargs() | overrides))


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
               '--model', str(model_path), '--no-mirror'])   # mirroring: test_estimate_gives_what_the_pose_node...
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc['members'] == K and doc['quaternion_order'] == 'x, y, z, w'
    rows = doc['images']
    assert [r['path'].rsplit('/', 1)[-1] for r in rows] == ['a.npy', 'b.png', 'c.jpg', 'scanner16.png']
    assert [r['encoding'] for r in rows] == ['32FC1', 'mono8', 'rgb8', 'mono16']
    ref = node_estimator(model_path, mirror=False).estimate(grey.astype(np.float32))   # the pose node's settings
    assert doc['settings']['mirror_tta'] is False and doc['members_per_estimate'] == K
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


def scanner_frame(path, level=1.0):
    """A 200 x 240 mono16 frame whose fan must be detected (not the model's size); returns (path, fan)."""
    fan = FanGeometry.square(-4.0, 119.5, ANGLE, 190.0)
    Image.fromarray(np.round(level * scene((200, 240), fan) * 65535).astype(np.uint16)).save(path)
    return path, fan


def run_json(args, tmp_path, capsys):
    out = tmp_path / 'est.json'
    rc = main(['estimate', *map(str, args), '--json', str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(out.read_text()), captured.out


def test_estimate_gives_what_the_pose_node_core_gives(tmp_path, model_path, capsys):
    """Same image through the command and through PoseNodeConfig + Estimator: same pose and sigma^2."""
    from echoposed_ros.estimator import read_image_file
    frame, _ = scanner_frame(tmp_path / 'scanner.png')
    data, encoding = read_image_file(frame)
    doc, _ = run_json([frame, '--model', model_path], tmp_path, capsys)
    node = node_estimator(model_path).estimate(data, encoding)
    row = doc['images'][0]
    np.testing.assert_allclose(row['probe_xyzw'], node.probe_xyzw, atol=1e-12)
    np.testing.assert_allclose(row['orbit_xyzw'], node.orbit_xyzw, atol=1e-12)
    assert row['sigma2'] == pytest.approx(node.sigma2, rel=1e-12, abs=1e-15)
    config = pose_config_from_yaml()
    assert doc['settings']['mirror_tta'] == config.mirror_tta is True
    assert doc['settings']['detect_threshold'] == config.detect_threshold
    assert doc['settings']['fan'] == config.fan and doc['members_per_estimate'] == 2 * K
    assert row['fan']['angle_rad'] == pytest.approx(ANGLE, abs=math.radians(1))
    # the mirroring matters: without it the command differs from the node, and matches a node without it
    plain, _ = run_json([frame, '--model', model_path, '--no-mirror'], tmp_path, capsys)
    assert plain['members_per_estimate'] == K and plain['settings']['mirror_tta'] is False
    assert plain['images'][0]['sigma2'] != pytest.approx(row['sigma2'], rel=1e-3)
    no_mirror = node_estimator(model_path, mirror=False).estimate(data, encoding)
    assert plain['images'][0]['sigma2'] == pytest.approx(no_mirror.sigma2, rel=1e-12, abs=1e-15)
    # another parameter file: the command reads the node's settings from it
    pose_yaml = tmp_path / 'pose.yaml'
    pose_yaml.write_text('echoposed_pose:\n  ros__parameters:\n    mirror_tta: false\n    fan: detect\n'
                         '    detect_threshold: 0.1\n')
    other, _ = run_json([frame, '--model', model_path, '--pose-config', pose_yaml], tmp_path, capsys)
    assert other['settings'] | {'pose_config': None} == {
        'pose_config': None, 'fan': 'detect', 'detect_threshold': 0.1, 'input_depth_mm': None, 'mirror_tta': False,
        'intra_op_threads': 2}
    want = node_estimator(model_path, pose_yaml).estimate(data, encoding)
    np.testing.assert_allclose(other['images'][0]['probe_xyzw'], want.probe_xyzw, atol=1e-12)


def test_estimate_with_an_explicit_fan_geometry(tmp_path, model_path, capsys):
    from echoposed_ros.estimator import read_image_file
    frame, fan = scanner_frame(tmp_path / 'scanner.png')
    doc, _ = run_json([frame, '--model', model_path, '--fan-geometry=-4,119.5,75,190'], tmp_path, capsys)
    want = node_estimator(model_path, fan=fan).estimate(*read_image_file(frame))
    np.testing.assert_allclose(doc['images'][0]['probe_xyzw'], want.probe_xyzw, atol=1e-12)
    assert doc['images'][0]['fan'] == doc['settings']['fan'] == {
        'apex_row': -4.0, 'apex_col': 119.5, 'angle_rad': pytest.approx(ANGLE), 'depth_rows': 190.0,
        'depth_cols': 190.0}
    for bad, expected in [('1,2,3', 'expected ROW,COL,ANGLE_DEG,DEPTH_ROWS[,DEPTH_COLS]'),
                          ('0,0,200,100', 'expected a value in (0, pi)')]:
        rc = main(['estimate', str(frame), '--json', str(tmp_path / 'x.json'), '--model', str(model_path),
                   f'--fan-geometry={bad}'])
        err = capsys.readouterr().err
        assert rc == 2 and expected in err and err.count('\n') == 1
    assert not (tmp_path / 'x.json').exists()


def test_estimate_flags_frames_above_the_controller_uncertainty_threshold(tmp_path, model_path, capsys):
    frame, _ = scanner_frame(tmp_path / 'scanner.png')
    doc, printed = run_json([frame, '--model', model_path], tmp_path, capsys)
    sigma2 = doc['images'][0]['sigma2']
    default = load_controller_config().uncertainty_threshold
    assert doc['uncertainty_threshold'] == default and doc['uncertainty_threshold_from'].endswith('controller.yaml')
    assert doc['images'][0]['uncertain'] is (sigma2 > default)
    assert f'above the uncertainty_threshold {default:g} rad^2' in printed
    below, printed = run_json([frame, '--model', model_path, '--uncertainty-threshold', sigma2 * 0.99], tmp_path,
                              capsys)
    assert below['images'][0]['uncertain'] is True and below['uncertain_frames'] == 1
    assert '(uncertain)' in printed and '1 of 1 frame(s) above' in printed
    controller = tmp_path / 'controller.yaml'
    controller.write_text(f'echoposed_controller:\n  ros__parameters:\n    uncertainty_threshold: {sigma2 * 1.01}\n')
    above, printed = run_json([frame, '--model', model_path, '--controller-config', controller], tmp_path, capsys)
    assert above['images'][0]['uncertain'] is False and above['uncertainty_threshold_from'] == str(controller)
    assert '0 of 1 frame(s) above' in printed


def test_probe_turns_are_the_twists_of_the_probe_factor_relative_to_the_reference():
    reference = Rotation.random(random_state=4).as_matrix()
    turns = [('z', 30.0), ('x', -12.0), ('y', 7.5), ('z', -170.0)]
    probes = np.stack([reference @ Rotation.from_euler(axis, deg, degrees=True).as_matrix() for axis, deg in turns])
    got = probe_turns_deg(reference, probes)
    for (axis, deg), row in zip(turns, got, strict=True):
        want = np.zeros(3)
        want['xyz'.index(axis)] = deg
        np.testing.assert_allclose(row, want, atol=1e-9)
    np.testing.assert_allclose(probe_turns_deg(reference, reference[None]), [[0.0, 0.0, 0.0]], atol=1e-9)
    # the left factor does not enter: a turn of the reference frame itself is not a probe turn
    left = Rotation.random(random_state=5).as_matrix()
    np.testing.assert_allclose(probe_turns_deg(left @ reference, left @ probes), got, atol=1e-9)


def test_estimate_writes_turns_relative_to_a_reference_as_csv(tmp_path, model_path, capsys):
    import csv
    frames = [scanner_frame(tmp_path / f'f{i}.png', level)[0] for i, level in enumerate((1.0, 0.7, 0.4))]
    table = tmp_path / 'turns.csv'
    doc, printed = run_json([*frames, '--model', model_path, '--csv', table, '--no-mirror'], tmp_path, capsys)
    rows = list(csv.DictReader(table.open()))
    assert list(rows[0]) == ['path', 'sigma2_rad2', 'uncertain', 'turn_x_deg', 'turn_y_deg', 'turn_z_deg',
                             'orbit_x', 'orbit_y', 'orbit_z', 'orbit_w', 'probe_x', 'probe_y', 'probe_z', 'probe_w']
    assert [r['path'] for r in rows] == [str(f) for f in frames] and doc['reference']['path'] == str(frames[0])
    probes = np.stack([quat_xyzw_to_matrix(np.array(r['probe_xyzw'])) for r in doc['images']])
    want = probe_turns_deg(probes[0], probes)
    for r, csv_row, turn in zip(doc['images'], rows, want, strict=True):
        np.testing.assert_allclose([r['probe_turn_deg'][a] for a in 'xyz'], turn, atol=1e-6)
        np.testing.assert_allclose([float(csv_row[f'turn_{a}_deg']) for a in 'xyz'], turn, atol=1e-3)
        np.testing.assert_allclose([float(csv_row[f'probe_{a}']) for a in 'xyzw'], r['probe_xyzw'], atol=1e-8)
    assert np.abs(want[0]).max() < 1e-9 and abs(want[2][2]) > 1.0        # the darker frames turned
    assert 'probe turn x +0.0 y +0.0 z +0.0 deg' in printed
    other = tmp_path / 'other.csv'
    assert main(['estimate', *map(str, frames), '--model', str(model_path), '--csv', str(other), '--no-mirror',
                 '--reference', str(frames[2])]) == 0
    rows = list(csv.DictReader(other.open()))
    assert max(abs(float(rows[2][f'turn_{a}_deg'])) for a in 'xyz') < 1e-3
    assert float(rows[0]['turn_z_deg']) == pytest.approx(-float(want[2][2]), abs=0.5)
    capsys.readouterr()
    assert main(['estimate', str(frames[0]), '--model', str(model_path)]) == 2
    err = capsys.readouterr().err
    assert 'no output: give --json OUT, --csv OUT or both' in err and err.count('\n') == 1


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
