"""Bags written directly with the rosbags writer: reading, and one clear error per broken bag.

Tiny bags (a few 32 x 32 images) are written into tmp_path with :class:`BagWriter` (rosbags
``Writer``, MCAP storage). ``make_bag`` is also used by the other bag tests.
"""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from echoposed_ros.bag import BagError
from echoposed_ros.bag.reader import read_bag
from echoposed_ros.bag.typestore import typestore
from echoposed_ros.bag.writer import BagWriter

ECHOPOSED = Path(sys.executable).with_name('echoposed')
T0 = 1_700_000_000_000_000_000  # ns
PERIOD = 33_333_333  # ns, 30 Hz


def _header(t: int, frame: str = 'probe'):
    ts = typestore().types
    return ts['std_msgs/msg/Header'](stamp=ts['builtin_interfaces/msg/Time'](sec=t // 10**9, nanosec=t % 10**9),
                                     frame_id=frame)


def _quat(r: np.ndarray):
    x, y, z, w = Rotation.from_matrix(r).as_quat()
    return typestore().types['geometry_msgs/msg/Quaternion'](x=x, y=y, z=z, w=w)


def image_msg(t: int, value: int, size: int = 32):
    data = np.full(size * size, value % 256, np.uint8)
    return typestore().types['sensor_msgs/msg/Image'](header=_header(t), height=size, width=size, encoding='mono8',
                                                      is_bigendian=0, step=size, data=data)


def compressed_msg(t: int, value: int, size: int = 32):
    from PIL import Image as PILImage
    buf = io.BytesIO()
    PILImage.fromarray(np.full((size, size), value % 256, np.uint8)).save(buf, format='PNG')
    return typestore().types['sensor_msgs/msg/CompressedImage'](header=_header(t), format='png',
                                                                data=np.frombuffer(buf.getvalue(), np.uint8))


def echopose_msg(t: int, orbit: np.ndarray, probe: np.ndarray, sigma2: float = 0.0, members: int = 0,
                 frame: str = 'heart'):
    m = [_quat(orbit)] * members
    return typestore().types['echoposed_msgs/msg/EchoPose'](
        header=_header(t, frame), orbit=_quat(orbit), probe=_quat(probe), uncertainty=sigma2,
        member_orbit=m, member_probe=[_quat(probe)] * members, inference_time=0.004)


def truth_poses(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n smoothly varying poses (orbit, probe) (n, 3, 3)."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)[:, None]
    orbit = Rotation.from_rotvec(0.2 * np.sin(0.1 * k + rng.uniform(0, 6, 3)) * [1, 1, 0]).as_matrix()
    probe = Rotation.from_rotvec(0.4 * np.sin(0.07 * k + rng.uniform(0, 6, 3))).as_matrix()
    return orbit, probe


def make_bag(path: Path, n: int = 12, images: bool = True, compressed: bool = False, truth: bool = True,
             poses: bool = True, extra: bool = True, close: bool = True, custom: dict | None = None) -> Path:
    """A small echoposed bag at 30 Hz: images (value = index), truth, live poses 40 ms late, commands,
    status. Returns the bag path (the writer is left open when ``close`` is False)."""
    ts = typestore().types
    writer = BagWriter(path, custom_data=custom)
    image_topic = '/probe/image/compressed' if compressed else '/probe/image'
    if images:
        writer.add_topic(image_topic, 'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image')
    if truth:
        writer.add_topic('/probe/true_pose', 'echoposed_msgs/msg/EchoPose')
    if poses:
        writer.add_topic('/echoposed/pose', 'echoposed_msgs/msg/EchoPose')
    if extra:
        writer.add_topic('/probe/cmd', 'echoposed_msgs/msg/ProbeTwist')
        writer.add_topic('/guidance/status', 'echoposed_msgs/msg/GuidanceStatus')
    orbit, probe = truth_poses(n)
    A = Rotation.from_rotvec([0.3, -0.2, 0.5]).as_matrix()  # the estimates' unknown left factor
    for i in range(n):
        t = T0 + i * PERIOD
        if images:
            writer.write_message(image_topic, t + 1_000_000, (compressed_msg if compressed else image_msg)(t, i))
        if truth:
            writer.write_message('/probe/true_pose', t + 1_000_000, echopose_msg(t, orbit[i], probe[i]))
        if poses:
            writer.write_message('/echoposed/pose', t + 40_000_000,
                                 echopose_msg(t, A @ orbit[i], A.T @ probe[i], sigma2=0.01 * (i + 1), members=3,
                                              frame='model'))
        if extra:
            v = ts['geometry_msgs/msg/Vector3']
            writer.write_message('/probe/cmd', t + 2_000_000, ts['echoposed_msgs/msg/ProbeTwist'](
                header=_header(t), orbit=v(x=0.1, y=0.0, z=0.0), probe=v(x=0.0, y=0.2, z=0.0)))
            state = 'converged' if i >= n - 3 else 'guiding'
            writer.write_message('/guidance/status', t + 3_000_000, ts['echoposed_msgs/msg/GuidanceStatus'](
                header=_header(t), state=2 if state == 'converged' else 1, state_name=state, target='A4C',
                effective_error=0.5 / (i + 1), orbit_error=0.0, probe_error=0.0, uncertainty=0.01,
                frames_within_tolerance=0, view_match=float('nan'), disagree=False, cue=''))
        if i == n // 2:
            writer.flush()
    if close:
        writer.close()
    return path


def test_a_written_bag_reads_back_with_every_series(tmp_path):
    bag = make_bag(tmp_path / 'good', custom={'echoposed.note': 'hello'})
    meta = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['storage_identifier'] == 'mcap' and meta['relative_file_paths'] == ['good.mcap']
    topics = {t['topic_metadata']['name']: t for t in meta['topics_with_message_count']}
    assert topics['/echoposed/pose']['topic_metadata']['type'] == 'echoposed_msgs/msg/EchoPose'
    assert topics['/echoposed/pose']['topic_metadata']['type_description_hash'].startswith('RIHS01_')
    assert topics['/probe/image']['message_count'] == 12

    c = read_bag(bag)
    assert c.images.topic == '/probe/image' and len(c.images) == 12
    assert [int(im[0, 0]) for im in c.images.images] == list(range(12))
    assert np.array_equal(c.images.stamps, T0 + np.arange(12) * PERIOD)
    orbit, probe = truth_poses(12)
    assert np.allclose(c.truth.orbit, orbit, atol=1e-9) and np.allclose(c.truth.probe, probe, atol=1e-9)
    assert np.allclose(c.poses.sigma2, 0.01 * np.arange(1, 13))
    assert np.array_equal(c.poses.times - c.poses.stamps, np.full(12, 40_000_000))
    assert c.status.states[-1] == 'converged' and c.commands.orbit.shape == (12, 3)
    assert c.custom == {'echoposed.note': 'hello'}
    from echoposed_ros.bag.reader import iter_image_batches
    batches = list(iter_image_batches(bag, '/probe/image', batch_size=5))
    assert [len(b[0]) for b in batches] == [5, 5, 2]
    assert np.array_equal(np.concatenate([b[2] for b in batches]), c.images.stamps)
    assert int(batches[2][0][1][0, 0]) == 11 and batches[0][1][0] == 'mono8'
    assert len(read_bag(bag, load_images=False).images) == 12


def test_compressed_images_are_read(tmp_path):
    c = read_bag(make_bag(tmp_path / 'png', compressed=True))
    assert c.images.topic == '/probe/image/compressed'
    assert c.images.encodings[0] == 'mono8' and int(c.images.images[5][3, 3]) == 5


def test_cut_mcap_is_reported_as_truncated(tmp_path):
    bag = make_bag(tmp_path / 'cut', n=30)
    mcap = bag / 'cut.mcap'
    data = mcap.read_bytes()
    mcap.write_bytes(data[:len(data) // 2])
    with pytest.raises(BagError) as info:
        read_bag(bag)
    message = str(info.value)
    assert str(bag) in message and 'truncated' in message and 'cut.mcap' in message


def test_bag_of_a_killed_recorder_is_reported_as_truncated(tmp_path):
    make_bag(tmp_path / 'live', n=30, close=False)  # flushed half way, never closed: what a SIGKILL leaves
    shutil.copytree(tmp_path / 'live', tmp_path / 'killed')
    with pytest.raises(BagError, match=r'killed: truncated: live\.mcap \(\d+ bytes\) ends without the MCAP footer'):
        read_bag(tmp_path / 'killed')


def test_salvage_recovers_the_complete_messages_of_truncated_bags(tmp_path):
    from echoposed_ros.bag.salvage import salvage

    make_bag(tmp_path / 'live', n=30, close=False)  # flushed after message 15, never closed
    shutil.copytree(tmp_path / 'live', tmp_path / 'killed')
    counts = salvage(tmp_path / 'killed', tmp_path / 'fixed')
    assert counts['/probe/image'] == 16 and counts['/probe/true_pose'] == 16
    c = read_bag(tmp_path / 'fixed')
    assert [int(im[0, 0]) for im in c.images.images] == list(range(16))
    full = make_bag(tmp_path / 'full', n=30)
    data = (full / 'full.mcap').read_bytes()
    (tmp_path / 'cut.mcap').write_bytes(data[:len(data) * 3 // 4])  # ends inside the second chunk
    result = subprocess.run([str(ECHOPOSED), 'bag', 'salvage', str(tmp_path / 'cut.mcap'), str(tmp_path / 'fixed2')],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert len(read_bag(tmp_path / 'fixed2').images) == 16
    (tmp_path / 'stub.mcap').write_bytes(data[:40])
    with pytest.raises(BagError, match='nothing to salvage'):
        salvage(tmp_path / 'stub.mcap', tmp_path / 'fixed3')


def _foreign_topic(writer: BagWriter, definition: str = '') -> None:
    """Add /acme/frame of type acme_msgs/msg/Frame (not stock, not installed) with one message; its
    definition embedded in the bag when given."""
    conn = writer._writer.add_connection('/acme/frame', 'acme_msgs/msg/Frame', msgdef=definition,
                                         rihs01='RIHS01_' + '0' * 64)
    writer._writer.write(conn, T0, b'\x00\x01\x00\x00' + b'\x00' * 4)


def test_unknown_type_on_an_unused_topic_is_ignored_and_named_when_read(tmp_path):
    from echoposed_ros.bag.reader import open_bag, resolve_types
    from echoposed_ros.bag.typestore import make_typestore

    writer = BagWriter(tmp_path / 'unknown')
    writer.add_topic('/probe/image', 'sensor_msgs/msg/Image')
    writer.write_message('/probe/image', T0, image_msg(T0, 1))
    _foreign_topic(writer)  # no definition anywhere: not stock, not installed, none embedded in the bag
    writer.close()
    c = read_bag(tmp_path / 'unknown')  # the scorer never reads /acme/frame
    assert len(c.images) == 1 and c.topics['/acme/frame'] == 'acme_msgs/msg/Frame'
    reader = open_bag(tmp_path / 'unknown')
    try:  # a reader of every topic (bag play) still gets the error naming the type and topic
        with pytest.raises(BagError) as info:
            resolve_types(tmp_path / 'unknown', reader, make_typestore())
    finally:
        reader.close()
    assert str(info.value) == (f"{tmp_path / 'unknown'}: unknown message type 'acme_msgs/msg/Frame' on topic "
                               '/acme/frame (not a known ROS type and the bag holds no usable definition of it)')


def test_a_type_defined_by_one_bag_does_not_leak_into_the_next(tmp_path):
    from echoposed_ros.bag.reader import open_bag, resolve_types
    from echoposed_ros.bag.typestore import make_typestore

    with BagWriter(tmp_path / 'defines') as writer:
        writer.add_topic('/probe/image', 'sensor_msgs/msg/Image')
        writer.write_message('/probe/image', T0, image_msg(T0, 1))
        _foreign_topic(writer, 'uint32 value\n')
    with BagWriter(tmp_path / 'lacks') as writer:
        writer.add_topic('/probe/image', 'sensor_msgs/msg/Image')
        writer.write_message('/probe/image', T0, image_msg(T0, 2))
        _foreign_topic(writer)

    def resolvable(bag: Path) -> bool:
        reader = open_bag(bag)
        try:
            resolve_types(bag, reader, make_typestore())
            return True
        except BagError:
            return False
        finally:
            reader.close()

    alone = resolvable(tmp_path / 'lacks')
    for bag in ('defines', 'lacks', 'defines'):
        assert len(read_bag(tmp_path / bag).images) == 1
    assert 'acme_msgs/msg/Frame' not in typestore().fielddefs  # the process-wide store is left as it was
    assert resolvable(tmp_path / 'defines') and not alone and not resolvable(tmp_path / 'lacks')


def test_bag_without_images_names_the_topics_it_has(tmp_path):
    with pytest.raises(BagError, match=r'noimg: no image topic \(sensor_msgs/msg/Image or CompressedImage\); '
                                       r'topics: .*/probe/true_pose \(echoposed_msgs/msg/EchoPose\)'):
        read_bag(make_bag(tmp_path / 'noimg', images=False))


def test_missing_path_and_not_a_bag(tmp_path):
    with pytest.raises(BagError, match='no such bag'):
        read_bag(tmp_path / 'nothing')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(BagError, match='not a bag'):
        read_bag(tmp_path / 'empty')


@pytest.mark.slow
def test_eval_batch_scores_good_bags_and_reports_each_failure(tmp_path):
    good = make_bag(tmp_path / 'good', n=20)
    noimg = make_bag(tmp_path / 'noimg', images=False)
    cut = make_bag(tmp_path / 'cut', n=20)
    (cut / 'cut.mcap').write_bytes((cut / 'cut.mcap').read_bytes()[:-100])
    out = tmp_path / 'scores.json'
    result = subprocess.run([str(ECHOPOSED), 'bag', 'eval', str(good), str(noimg), str(cut), '--no-model',
                             '--target-bag-time', '0.5', '--json', str(out), '--plots', str(tmp_path / 'plots')],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    scores = json.loads(out.read_text())
    assert scores['scored'] == 1 and [b['bag'] for b in scores['bags']] == [str(good)]
    failed = {Path(f['bag']).name: f['error'] for f in scores['failed']}
    assert set(failed) == {'noimg', 'cut'}
    assert 'no image topic' in failed['noimg'] and 'truncated' in failed['cut']
    assert len(result.stderr.strip().splitlines()) == 2  # one line per failed bag
    report = scores['bags'][0]
    # recorded estimates carry a constant left factor: after alignment they match the truth exactly
    assert report['recorded']['error_deg']['max'] < 1e-4
    assert report['recorded']['latency_ms']['median'] == pytest.approx(40.0, abs=1e-6)
    assert report['recorded']['sigma_error_spearman'] is None or abs(report['recorded']['sigma_error_spearman']) < 1
    assert report['target']['name'].startswith('truth at 0.5')
    assert report['target']['min_error_deg'] == pytest.approx(0.0, abs=1e-6)
    assert report['guidance']['final_state'] == 'converged'
    assert report['commands']['max_probe_speed'] == pytest.approx(0.2)
    assert (tmp_path / 'plots' / 'good.png').stat().st_size > 10_000


def test_offline_estimation_skips_images_the_estimator_refuses(tmp_path):
    """Like the live pose node, bag eval rejects a blank frame and goes on with the next ones."""
    from echoposed_ros.bag.offline import evaluate_bag
    from echoposed_ros.estimator import Estimator, model_fan
    from echoposed_ros.estimator.synthetic import write_model

    ts = typestore().types
    mask = model_fan(64, 64, np.radians(75.0)).mask((64, 64))
    orbit, probe = truth_poses(10)
    with BagWriter(tmp_path / 'fan') as writer:
        writer.add_topic('/probe/image', 'sensor_msgs/msg/Image')
        writer.add_topic('/probe/true_pose', 'echoposed_msgs/msg/EchoPose')
        for i in range(10):
            t = T0 + i * PERIOD
            # frames 0 and 1 are blank: refused as blank frames (as in the pose node, whatever fan is
            # known for their size)
            value = 0 if i in (0, 1) else 60 + 10 * i
            writer.write_message('/probe/image', t, ts['sensor_msgs/msg/Image'](
                header=_header(t), height=64, width=48, encoding='mono8', is_bigendian=0, step=48,
                data=(mask[:, 8:56] * value).astype(np.uint8).ravel()))  # 64 x 48: the fan is detected
            writer.write_message('/probe/true_pose', t, echopose_msg(t, orbit[i], probe[i]))
    members = Rotation.from_rotvec([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.0, 0.05, 0.0]]).as_matrix()
    model = write_model(tmp_path / 'm.onnx', members, members, gain=1.0)
    report, series = evaluate_bag(tmp_path / 'fan', Estimator(model, detect_threshold=0.02))
    off = report['offline']
    assert off['estimated'] == 8 and off['rejected'] == 2 and 'blank frame' in off['first_rejection']
    assert off['matched'] == 8 and off['sigma2']['count'] == 8
    assert series['offline']['t'][0] == pytest.approx(2 * PERIOD * 1e-9)  # since the first image


def test_target_view_needs_a_stored_pose_or_a_loadable_volume(tmp_path):
    from echoposed_ros.bag.offline import TargetSpec, evaluate_bag

    bag = make_bag(tmp_path / 'plain', n=5)
    with pytest.raises(BagError, match=r'plain: target view A4C is not stored in the bag; give --volume FILE'):
        evaluate_bag(bag, None, TargetSpec(view='A4C'))
    with pytest.raises(BagError, match=r'volume .*missing\.npz: cannot be loaded'):
        evaluate_bag(bag, None, TargetSpec(view='A4C', volume=tmp_path / 'missing.npz'))
    report, _ = evaluate_bag(bag, None)  # no target given or stored: none scored
    assert 'target' not in report and report['offline'] == {'skipped': 'no model'}


def test_recording_into_an_existing_folder_is_refused_with_one_line(tmp_path):
    with pytest.raises(BagError, match=f'{tmp_path}: cannot create the bag'):
        BagWriter(tmp_path)
    result = subprocess.run([str(ECHOPOSED), 'bag', 'record', str(tmp_path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f'echoposed bag record: {tmp_path}: cannot create the bag: '), line


# --- damaged bags: checksums, framing, odd frames -------------------------------------------------


def _chunk_offsets(mcap: Path) -> list[int]:
    from rosbags.rosbag2.storage_mcap import McapReader

    reader = McapReader(mcap)
    reader.open()
    try:
        return [c.chunk_start_offset for c in reader.chunks]
    finally:
        reader.close()


def _without_crcs(mcap: Path) -> None:
    """Zero the chunk and summary CRCs in place: a bag as rosbags' own writer (and older recorders) write it."""
    data = bytearray(mcap.read_bytes())
    for offset in _chunk_offsets(mcap):
        data[offset + 33:offset + 37] = bytes(4)
    data[-12:-8] = bytes(4)
    mcap.write_bytes(bytes(data))


def _damage(mcap: Path, seed: int, size: int = 65536, insert: bool = False) -> None:
    """``size`` random bytes written over (or inserted into) the middle of the file."""
    rng = np.random.default_rng(seed)
    data = bytearray(mcap.read_bytes())
    at = len(data) // 2 - size // 2 + int(rng.integers(-1000, 1000))
    data[at:at if insert else at + size] = rng.bytes(size)
    mcap.write_bytes(bytes(data))


def _one_bag_error(bag: Path, **kwargs) -> str:
    """The message of the one BagError reading ``bag`` raises; it names the bag exactly once."""
    from echoposed_ros.bag.reader import iter_image_batches

    with pytest.raises(BagError) as info:
        read_bag(bag, **kwargs)
    message = str(info.value)
    assert message.startswith(f'{bag}: ') and message.count(str(bag)) == 1, message
    assert '\n' not in message
    with pytest.raises(BagError):
        list(iter_image_batches(bag, '/probe/image', skipped={}))
    return message


def test_the_writer_stores_chunk_and_summary_crcs_and_the_reader_checks_them(tmp_path):
    import zlib

    bag = make_bag(tmp_path / 'crc', n=20)  # flushed half way: two chunks
    mcap = bag / 'crc.mcap'
    data = mcap.read_bytes()
    offsets = _chunk_offsets(mcap)
    assert len(offsets) == 2
    for offset in offsets:  # the MCAP chunk record: CRC-32 of the (uncompressed) records
        length = int.from_bytes(data[offset + 1:offset + 9], 'little')
        stored = int.from_bytes(data[offset + 33:offset + 37], 'little')
        name = int.from_bytes(data[offset + 37:offset + 41], 'little')
        records = data[offset + 41 + name + 8:offset + 9 + length]
        assert stored != 0 and stored == zlib.crc32(records)
    summary_start = int.from_bytes(data[-37 + 9:-37 + 17], 'little')
    assert int.from_bytes(data[-12:-8], 'little') == zlib.crc32(data[summary_start:-12]) != 0
    check = read_bag(bag).integrity
    assert (check.chunks, check.crc_checked, check.summary_crc_checked) == (2, 2, True)

    flipped = bytearray(data)
    flipped[offsets[1] + 200] ^= 0x01  # one bit inside the second chunk's records: scored silently without CRCs
    mcap.write_bytes(bytes(flipped))
    at, length = offsets[1], int.from_bytes(data[offsets[1] + 1:offsets[1] + 9], 'little')
    stored, computed = int.from_bytes(data[at + 33:at + 37], 'little'), zlib.crc32(flipped[at + 49:at + 9 + length])
    assert _one_bag_error(bag) == (f'{bag}: crc.mcap: chunk 1 at byte {at}: CRC-32 mismatch (stored 0x{stored:08x}, '
                                   f'computed 0x{computed:08x}); expected equal: the chunk is damaged')
    flipped = bytearray(data)
    flipped[summary_start + 20] ^= 0x01  # inside the summary section
    mcap.write_bytes(bytes(flipped))
    assert 'summary section' in _one_bag_error(bag) and 'CRC-32 mismatch' in _one_bag_error(bag)


def test_bags_without_crcs_still_read(tmp_path):
    bag = make_bag(tmp_path / 'old', n=20)
    _without_crcs(bag / 'old.mcap')
    c = read_bag(bag)
    assert len(c.images) == 20 and [int(im[0, 0]) for im in c.images.images] == list(range(20))
    assert (c.integrity.chunks, c.integrity.crc_checked, c.integrity.summary_crc_checked) == (2, 0, False)


@pytest.mark.parametrize('crcs', [True, False], ids=['crc', 'no-crc'])
def test_random_bytes_in_the_middle_of_a_bag_are_one_bag_error(tmp_path, crcs):
    """64 KiB of random bytes over, or inserted into, the middle of a bag: one BagError naming the bag, never
    rosbags' own OverflowError / MemoryError / SerdeError; with CRCs every such damage is detected."""
    base = make_bag(tmp_path / 'base', n=150)  # about 290 kB, two chunks
    if not crcs:
        _without_crcs(base / 'base.mcap')
    detected = 0
    for seed in range(6):
        bag = tmp_path / f'damaged{seed}'
        shutil.copytree(base, bag)
        _damage(bag / 'base.mcap', seed, insert=seed % 2 == 1)
        try:
            read_bag(bag, load_images=False)
        except BagError:
            _one_bag_error(bag)
            detected += 1
    assert detected == 6 if crcs else detected >= 3


def test_a_frame_that_cannot_be_decoded_is_skipped_and_counted(tmp_path):
    from echoposed_ros.bag.reader import iter_image_batches

    with BagWriter(tmp_path / 'enc') as writer:
        writer.add_topic('/probe/image', 'sensor_msgs/msg/Image')
        for i in range(6):
            msg = image_msg(T0 + i * PERIOD, i)
            if i in (2, 4):
                msg.encoding = 'yuv422_odd'
            writer.write_message('/probe/image', T0 + i * PERIOD, msg)
    skipped: dict[str, int] = {}
    batches = list(iter_image_batches(tmp_path / 'enc', '/probe/image', batch_size=2, skipped=skipped))
    assert [int(im[0, 0]) for b in batches for im in b[0]] == [0, 1, 3, 5]
    reason = "encoding 'yuv422_odd' is not supported; expected one of mono8, mono16, rgb8, bgr8, 32FC1"
    assert skipped == {reason: 2}
    with pytest.raises(BagError) as info:  # without a counter: one error naming the bag once
        list(iter_image_batches(tmp_path / 'enc', '/probe/image'))
    assert str(info.value) == f"{tmp_path / 'enc'}: /probe/image message 2: {reason}"
    with pytest.raises(BagError) as info:  # read_bag with pixels: the same
        read_bag(tmp_path / 'enc')
    assert str(info.value) == f"{tmp_path / 'enc'}: /probe/image message 2: {reason}"
    assert len(read_bag(tmp_path / 'enc', load_images=False).images) == 6


def test_a_png_declaring_a_huge_image_is_a_skipped_frame(tmp_path):
    import struct
    import zlib

    from echoposed_ros.bag.reader import iter_image_batches

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))

    bomb = (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 20000, 10000, 8, 0, 0, 0, 0))
            + chunk(b'IEND', b''))
    ts = typestore().types
    with BagWriter(tmp_path / 'bomb') as writer:
        writer.add_topic('/probe/image/compressed', 'sensor_msgs/msg/CompressedImage')
        for i in range(3):
            msg = compressed_msg(T0 + i * PERIOD, i)
            if i == 1:
                msg = ts['sensor_msgs/msg/CompressedImage'](header=_header(T0 + i * PERIOD), format='png',
                                                            data=np.frombuffer(bomb, np.uint8))
            writer.write_message('/probe/image/compressed', T0 + i * PERIOD, msg)
    skipped: dict[str, int] = {}
    batches = list(iter_image_batches(tmp_path / 'bomb', '/probe/image/compressed', skipped=skipped))
    assert [int(im[0, 0]) for im in batches[0][0]] == [0, 2]
    (reason,) = skipped
    assert reason.startswith("compressed image (format 'png') cannot be decoded (DecompressionBombError")


def test_salvage_carries_custom_data_over(tmp_path, capsys):
    from echoposed_ros.bag.salvage import salvage_bag
    from echoposed_ros.cli import main

    custom = {'echoposed.target_view': 'A4C', 'echoposed.target_orbit_xyzw': '[0, 0, 0, 1]'}
    bag = make_bag(tmp_path / 'cut', n=30, custom=custom)
    data = (bag / 'cut.mcap').read_bytes()
    (bag / 'cut.mcap').write_bytes(data[:len(data) * 3 // 4])  # cut: metadata.yaml is still there
    kept = salvage_bag(bag, tmp_path / 'fixed')
    assert kept.custom_source == 'metadata.yaml' and kept.custom_data == custom
    assert read_bag(tmp_path / 'fixed').custom == custom and kept.counts['/probe/image'] == 16

    (tmp_path / 'bare.mcap').write_bytes(data)  # a complete file on its own: its rosbag2 metadata record
    kept = salvage_bag(tmp_path / 'bare.mcap', tmp_path / 'fixed2')
    assert kept.custom_source == 'MCAP metadata record' and read_bag(tmp_path / 'fixed2').custom == custom

    make_bag(tmp_path / 'live', n=30, close=False, custom=custom)  # a killed recorder: nothing holds it
    shutil.copytree(tmp_path / 'live', tmp_path / 'killed')
    assert main(['bag', 'salvage', str(tmp_path / 'killed'), str(tmp_path / 'fixed3')]) == 0
    err = capsys.readouterr().err
    assert f'{tmp_path / "killed"}: no custom_data found' in err and '--target VIEW --volume FILE' in err

    damaged = make_bag(tmp_path / 'damaged', n=30)
    offsets = _chunk_offsets(damaged / 'damaged.mcap')
    flipped = bytearray((damaged / 'damaged.mcap').read_bytes())
    flipped[offsets[0] + 300] ^= 0x01  # the first chunk is damaged, the second is intact
    (damaged / 'damaged.mcap').write_bytes(bytes(flipped))
    kept = salvage_bag(damaged, tmp_path / 'fixed4')
    assert kept.damaged_chunks == 1 and kept.counts['/probe/image'] == 14  # messages 16..29
    assert [int(im[0, 0]) for im in read_bag(tmp_path / 'fixed4').images.images] == list(range(16, 30))


def fan_bag(path: Path, n: int = 60, odd_encoding_at: tuple[int, ...] = (), foreign: str | None = None) -> Path:
    """n 64 x 48 mono8 frames holding a sector fan (the estimator accepts them) and ground truth at 30 Hz;
    frames ``odd_encoding_at`` declare an unknown encoding; ``foreign``: add /acme/frame of an unknown type
    with this definition embedded ('' for none)."""
    from echoposed_ros.estimator import model_fan

    ts = typestore().types
    mask = model_fan(64, 64, np.radians(75.0)).mask((64, 64))
    orbit, probe = truth_poses(n)
    with BagWriter(path) as writer:
        writer.add_topic('/probe/image', 'sensor_msgs/msg/Image')
        writer.add_topic('/probe/true_pose', 'echoposed_msgs/msg/EchoPose')
        if foreign is not None:
            _foreign_topic(writer, foreign)
        for i in range(n):
            t = T0 + i * PERIOD
            writer.write_message('/probe/image', t, ts['sensor_msgs/msg/Image'](
                header=_header(t), height=64, width=48, encoding='weird8' if i in odd_encoding_at else 'mono8',
                is_bigendian=0, step=48, data=(mask[:, 8:56] * (60 + i)).astype(np.uint8).ravel()))
            writer.write_message('/probe/true_pose', t, echopose_msg(t, orbit[i], probe[i]))
            if i == n // 2:
                writer.flush()
    return path


@pytest.mark.slow
def test_eval_of_a_batch_of_damaged_bags_is_the_same_in_either_order(tmp_path, capsys):
    """Truncated, random bytes, one flipped bit, an undecodable frame, an unknown type on an unused topic (alone
    and after a bag that defines it), a good bag: each bag's result is its own, whatever the order; the JSON is
    written every time; each failure is one stderr line naming its bag once."""
    from echoposed_ros.cli import main
    from echoposed_ros.estimator.synthetic import write_model

    members = Rotation.from_rotvec([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.0, 0.05, 0.0]]).as_matrix()
    model = write_model(tmp_path / 'm.onnx', members, members, gain=1.0)
    bags = tmp_path / 'bags'
    good = fan_bag(bags / 'good')
    cut = fan_bag(bags / 'truncated')
    data = (cut / 'truncated.mcap').read_bytes()
    (cut / 'truncated.mcap').write_bytes(data[:len(data) * 2 // 3])
    noise = fan_bag(bags / 'random_bytes')
    assert (noise / 'random_bytes.mcap').stat().st_size > 3 * 65536
    _damage(noise / 'random_bytes.mcap', seed=1)
    flipped = fan_bag(bags / 'crc_damaged')
    offset = _chunk_offsets(flipped / 'crc_damaged.mcap')[1]
    raw = bytearray((flipped / 'crc_damaged.mcap').read_bytes())
    raw[offset + 500] ^= 0x10
    (flipped / 'crc_damaged.mcap').write_bytes(bytes(raw))
    odd = fan_bag(bags / 'odd_encoding', odd_encoding_at=(5,))
    defines = fan_bag(bags / 'defines_type', foreign='uint32 value\n')
    unknown = fan_bag(bags / 'unknown_type', foreign='')
    batch = [defines, unknown, good, noise, odd, cut, flipped]

    def run(order: list[Path], out: Path) -> tuple[dict, dict, list[str]]:
        code = main(['bag', 'eval', *map(str, order), '--model', str(model), '--target-bag-time', '0.5',
                     '--json', str(out)])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 1
        scores = json.loads(out.read_text())
        timing = ('eval_s', 'read_s', 'realtime_factor', 'estimate_s')
        scored = {r['bag']: {k: ({kk: vv for kk, vv in v.items() if kk not in timing} if isinstance(v, dict) else v)
                             for k, v in r.items() if k not in timing} for r in scores['bags']}
        return scored, {f['bag']: f for f in scores['failed']}, lines

    scored, failed, lines = run(batch, tmp_path / 'forward.json')
    scored_r, failed_r, lines_r = run(batch[::-1], tmp_path / 'reverse.json')
    assert scored == scored_r and failed == failed_r and sorted(lines) == sorted(lines_r)
    assert set(scored) == {str(b) for b in (good, odd, defines, unknown)}
    assert set(failed) == {str(b) for b in (noise, cut, flipped)}
    assert len(lines) == 3  # one line per failed bag, naming it once
    for bag, entry in failed.items():
        assert entry['ok'] is False and entry['error'].startswith(f'{bag}: ') and entry['error'].count(bag) == 1
        assert f'echoposed bag eval: {entry["error"]}' in lines
    assert 'truncated' in failed[str(cut)]['error']
    assert f'chunk 1 at byte {offset}: CRC-32 mismatch' in failed[str(flipped)]['error']
    assert 'CRC-32 mismatch' in failed[str(noise)]['error']
    off = scored[str(odd)]['offline']
    assert off['rejected'] == 1 and off['estimated'] == 59 and off['rejected_by_reason'] == {
        "encoding 'weird8' is not supported; expected one of mono8, mono16, rgb8, bgr8, 32FC1": 1}
    assert scored[str(good)]['offline']['estimated'] == 60 and scored[str(good)]['offline']['rejected_by_reason'] == {}
    assert scored[str(good)]['integrity'] == {'chunks': 2, 'chunk_crcs_checked': 2, 'summary_crc_checked': True}
    assert scored[str(unknown)]['offline']['estimated'] == 60  # its unknown, unused topic is ignored


def test_offline_estimates_are_fused_with_the_recorded_arm_poses_as_the_pose_node_fuses(tmp_path):
    """With cycle fusion (config/pose.yaml) bag eval fuses each offline estimate with the recorded arm poses
    (/probe/pose); a bag without them gets single frames and says so; window 0 fuses nothing."""
    from echoposed_ros.bag.offline import evaluate_bag
    from echoposed_ros.estimator import Estimator, model_fan
    from echoposed_ros.estimator.fusion import FusionSettings
    from echoposed_ros.estimator.synthetic import write_model

    ts = typestore().types
    mask = model_fan(64, 64, np.radians(75.0)).mask((64, 64))
    orbit, probe = truth_poses(10)

    def write(path, with_arm):
        with BagWriter(path) as writer:
            writer.add_topic('/probe/image', 'sensor_msgs/msg/Image')
            writer.add_topic('/probe/true_pose', 'echoposed_msgs/msg/EchoPose')
            if with_arm:
                writer.add_topic('/probe/pose', 'geometry_msgs/msg/PoseStamped')
            for i in range(10):
                t = T0 + i * PERIOD
                writer.write_message('/probe/image', t, ts['sensor_msgs/msg/Image'](
                    header=_header(t), height=64, width=64, encoding='mono8', is_bigendian=0, step=64,
                    data=(mask * (60 + 10 * i)).astype(np.uint8).ravel()))
                writer.write_message('/probe/true_pose', t, echopose_msg(t, orbit[i], probe[i]))
                if with_arm:   # the probe turning about its beam, 0.05 rad a frame
                    pose = ts['geometry_msgs/msg/Pose'](position=ts['geometry_msgs/msg/Point'](x=0.0, y=0.0, z=0.0),
                                                         orientation=_quat(Rotation.from_rotvec([0, 0, 0.05 * i])
                                                                           .as_matrix()))
                    writer.write_message('/probe/pose', t, ts['geometry_msgs/msg/PoseStamped'](
                        header=_header(t, 'world'), pose=pose))
        return path

    members = Rotation.from_rotvec([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.0, 0.05, 0.0]]).as_matrix()
    model = Estimator(write_model(tmp_path / 'm.onnx', members, members, gain=1.0))
    arm_bag, plain_bag = write(tmp_path / 'arm', True), write(tmp_path / 'plain', False)
    fused, _ = evaluate_bag(arm_bag, model, fusion=FusionSettings(window_s=1.0))
    single, _ = evaluate_bag(arm_bag, model, fusion=FusionSettings(window_s=0.0))
    assert fused['offline']['fused'] == 9 and fused['offline']['fusion_window_s'] == 1.0   # all but the first
    assert single['offline']['fused'] == 0 and single['offline']['fusion_window_s'] == 0.0
    # the synthetic model reads every image alike: fused with frames carried by the turn, the estimates move
    assert fused['offline']['error_deg']['median'] != pytest.approx(single['offline']['error_deg']['median'])
    plain, _ = evaluate_bag(plain_bag, model, fusion=FusionSettings(window_s=1.0))
    assert plain['offline']['fused'] == 0 and 'no arm poses' in plain['offline']['fusion']
