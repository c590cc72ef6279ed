"""Reading echoposed bags (rosbag2, MCAP or SQLite storage) into arrays; no rclpy.

:func:`read_bag` opens a bag directory (or a bare ``.mcap`` file), checks it (complete, every
message type known, an image topic present) and returns a :class:`BagContents`:

- images (``sensor_msgs/Image`` any supported encoding, or ``sensor_msgs/CompressedImage``
  PNG / JPEG) with their header stamps and bag (receive) times;
- ``probe/true_pose`` (simulator ground truth, ``EchoPose`` in frame ``heart``) if recorded;
- ``echoposed/pose`` (live estimates) if recorded, with sigma^2 and inference time;
- ``probe/cmd`` (``ProbeTwist``) and ``guidance/status`` (``GuidanceStatus``) if recorded;
- the bag's ``custom_data`` (e.g. the target view stored by the recorder).

Times are int64 nanoseconds (ROS time); rotations (N, 3, 3) float64; quaternions on the wire are
(x, y, z, w). Every problem raises one :class:`BagError` naming the bag once, the problem and what
was expected: damaged files included (MCAP framing and CRC-32s are checked on opening, see
:mod:`.integrity`; whatever rosbags raises on damaged data is turned into a BagError).

Each bag is read with a type store of its own (:func:`~.typestore.make_typestore`), so definitions
embedded in one bag never change how another is read; only the types of the topics read need to
be known (an unknown type on another topic is ignored).
"""
from __future__ import annotations

import io
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader

from .errors import BagError
from .integrity import McapCheck, verify_mcap, verify_summary
from .typestore import ensure_type, make_typestore

__all__ = [
    'COMMAND_TOPIC',
    'IMAGE_TOPICS',
    'IMAGE_TYPES',
    'MCAP_MAGIC',
    'POSE_TOPIC',
    'PROBE_POSE_TOPIC',
    'STATUS_TOPIC',
    'TRUTH_TOPIC',
    'BagContents',
    'CommandSeries',
    'ImageSeries',
    'PoseSeries',
    'ProbePoseSeries',
    'StatusSeries',
    'check_complete',
    'iter_image_batches',
    'open_bag',
    'read_bag',
    'read_pose_stamped',
    'resolve_types',
]

MCAP_MAGIC = b'\x89MCAP0\r\n'
IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
IMAGE_TOPICS = ('/probe/image', '/probe/image/compressed')
TRUTH_TOPIC = '/probe/true_pose'
POSE_TOPIC = '/echoposed/pose'
COMMAND_TOPIC = '/probe/cmd'
STATUS_TOPIC = '/guidance/status'
PROBE_POSE_TOPIC = '/probe/pose'


@dataclass
class ImageSeries:
    """N images: stamps (header) and times (bag receive time), int64 ns; the arrays (H, W) or
    (H, W, 3) with their ROS encodings (empty lists when read with ``load_images=False``)."""

    topic: str
    stamps: np.ndarray
    times: np.ndarray
    images: list[np.ndarray]
    encodings: list[str]

    def __len__(self) -> int:
        return len(self.stamps)


@dataclass
class PoseSeries:
    """N ``EchoPose`` messages: stamps / times int64 ns; orbit, probe (N, 3, 3) (canonical mean);
    sigma2 (N,) rad^2; inference_s (N,); member_mean_orbit / member_mean_probe (N, 3, 3): the
    projected mean of the aligned members before gauge fixing (equal to orbit / probe when the
    message has no members)."""

    topic: str
    stamps: np.ndarray
    times: np.ndarray
    orbit: np.ndarray
    probe: np.ndarray
    sigma2: np.ndarray
    inference_s: np.ndarray
    member_mean_orbit: np.ndarray
    member_mean_probe: np.ndarray

    def __len__(self) -> int:
        return len(self.stamps)


@dataclass
class ProbePoseSeries:
    """N ``geometry_msgs/PoseStamped`` (the arm's probe pose): stamps / times int64 ns; position (N, 3) m;
    orientation (N, 3, 3) (columns = probe axes in ``frame_id``)."""

    topic: str
    frame_id: str
    stamps: np.ndarray
    times: np.ndarray
    position: np.ndarray
    orientation: np.ndarray

    def __len__(self) -> int:
        return len(self.stamps)


@dataclass
class CommandSeries:
    """N ``ProbeTwist`` commands: times (bag, ns); orbit, probe (N, 3) body rates, rad/s."""

    topic: str
    times: np.ndarray
    orbit: np.ndarray
    probe: np.ndarray


@dataclass
class StatusSeries:
    """N ``GuidanceStatus`` messages: times (bag, ns); state names; estimated effective error (rad);
    sigma2 (rad^2); target names."""

    topic: str
    times: np.ndarray
    states: list[str]
    effective_error: np.ndarray
    sigma2: np.ndarray
    targets: list[str]


@dataclass
class BagContents:
    path: Path
    topics: dict[str, str]
    counts: dict[str, int]
    start_ns: int
    duration_s: float
    images: ImageSeries
    truth: PoseSeries | None = None
    poses: PoseSeries | None = None
    commands: CommandSeries | None = None
    status: StatusSeries | None = None
    custom: dict[str, str] = field(default_factory=dict)
    integrity: McapCheck = field(default_factory=McapCheck)


def _storage_files(path: Path) -> list[Path]:
    return sorted(path.glob('*.mcap')) if path.is_dir() else [path]


def check_complete(path: str | Path) -> None:
    """BagError when an MCAP file of the bag has no footer (cut, or its recorder was killed) or the
    directory has no metadata.yaml."""
    path = Path(path)
    if not path.exists():
        raise BagError(f'{path}: no such bag (expected a rosbag2 directory or an .mcap file)')
    for f in _storage_files(path):
        if f.suffix != '.mcap':
            continue
        size = f.stat().st_size
        with f.open('rb') as fh:
            head = fh.read(8)
            fh.seek(max(size - 8, 0))
            tail = fh.read(8)
        if head != MCAP_MAGIC:
            raise BagError(f'{path}: {f.name} is not an MCAP file (bad magic)')
        if tail != MCAP_MAGIC:
            raise BagError(f'{path}: truncated: {f.name} ({size} bytes) ends without the MCAP footer '
                           '(the file was cut or its recorder was killed before closing it; `echoposed bag salvage` '
                           'recovers the complete messages)')
    if path.is_dir() and not (path / 'metadata.yaml').is_file():
        if not _storage_files(path):
            raise BagError(f'{path}: not a bag: no metadata.yaml and no .mcap file')
        raise BagError(f'{path}: truncated: no metadata.yaml (its recorder did not close the bag; '
                       '`echoposed bag salvage` recovers the complete messages)')


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f'{type(exc).__name__}: {text}' if text else type(exc).__name__


def _open_checked(path: Path) -> tuple[Reader, McapCheck]:
    check_complete(path)
    summary = [verify_summary(f, str(path)) for f in _storage_files(path) if f.suffix == '.mcap']
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags on a damaged summary or metadata.yaml: any error type
        raise BagError(f'{path}: cannot be opened as a rosbag2 bag ({_describe(exc)}); expected an intact '
                       'metadata.yaml and MCAP summary: the bag is damaged') from exc
    try:
        storage = reader.storage
        check = McapCheck()
        for part in getattr(storage, 'storages', [storage]):
            if hasattr(part, 'chunks'):  # MCAP (SQLite storage has no chunks)
                check = check + verify_mcap(part, str(path))
    except BaseException:
        reader.close()
        raise
    return reader, McapCheck(check.chunks, check.crc_checked, any(summary))


def open_bag(path: str | Path) -> Reader:
    """An open rosbags Reader, after :func:`check_complete` and :func:`~.integrity.verify_mcap`
    (framing and CRC-32s of every MCAP file); every failure is a BagError."""
    return _open_checked(Path(path))[0]


def resolve_types(path: Path, reader: Reader, store: Any, connections: Sequence[Any] | None = None) -> None:
    """Make the type of every connection in ``connections`` (default: all of the open bag) known to
    ``store`` (stock, installed, or the bag's own definition); BagError naming the type and topic
    otherwise."""
    for conn in reader.connections if connections is None else connections:
        if conn.msgtype in store.fielddefs:
            continue
        try:
            ensure_type(store, conn.msgtype)
            continue
        except BagError:
            pass
        definition = getattr(conn.msgdef, 'data', '') or ''
        if definition.strip():
            from rosbags.typesys import get_types_from_msg
            try:
                store.register(get_types_from_msg(definition, conn.msgtype))
                continue
            except Exception:
                pass
        raise BagError(f'{path}: unknown message type {conn.msgtype!r} on topic {conn.topic} '
                       '(not a known ROS type and the bag holds no usable definition of it)')


def _pick_image_topic(path: Path, topics: dict[str, str], counts: dict[str, int], wanted: str | None) -> str:
    if wanted is not None:
        name = wanted if wanted.startswith('/') else '/' + wanted
        if name not in topics:
            raise BagError(f'{path}: no image topic {name} (topics: {", ".join(sorted(topics)) or "none"})')
        if topics[name] not in IMAGE_TYPES:
            raise BagError(f'{path}: topic {name} is {topics[name]}, not an image '
                           f'({" or ".join(IMAGE_TYPES)})')
        return name
    images = [t for t, ty in topics.items() if ty in IMAGE_TYPES]
    if not images:
        raise BagError(f'{path}: no image topic (sensor_msgs/msg/Image or CompressedImage); topics: '
                       f'{", ".join(f"{t} ({ty})" for t, ty in sorted(topics.items())) or "none"}')
    preferred = [t for t in IMAGE_TOPICS if t in images and counts.get(t, 0)]
    if preferred:
        return preferred[0]
    with_messages = [t for t in sorted(images) if counts.get(t, 0)]
    return (with_messages or sorted(images))[0]


class _Undecodable(Exception):
    """An image message that cannot be decoded; ``reason`` names why (the same for like frames)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _decode_image(msg: Any, msgtype: str) -> tuple[np.ndarray, str]:
    """(array, encoding) of an ``Image`` or ``CompressedImage`` message; :class:`_Undecodable` otherwise."""
    from ..estimator import EstimatorError, decode_buffer

    if msgtype == 'sensor_msgs/msg/Image':
        try:
            array = decode_buffer(msg.data, msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian),
                                  name='image')
        except EstimatorError as exc:
            raise _Undecodable(str(exc).removeprefix('image: ')) from exc
        return array, msg.encoding
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError
    try:
        with PILImage.open(io.BytesIO(bytes(msg.data))) as img:
            img.load()
            if img.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
                return np.asarray(img, dtype=np.uint16), 'mono16'
            if img.mode in ('L', 'P', '1', 'LA'):
                return np.asarray(img.convert('L')), 'mono8'
            return np.asarray(img.convert('RGB')), 'rgb8'
    except UnidentifiedImageError as exc:  # its text holds an object address: not a stable reason
        raise _Undecodable(f'compressed data (format {msg.format!r}) is not an image; expected PNG or JPEG') from exc
    except Exception as exc:  # any decoder error on bad data (OSError, DecompressionBombError, SyntaxError...)
        raise _Undecodable(f'compressed image (format {msg.format!r}) cannot be decoded '
                           f'({type(exc).__name__}: {exc})') from exc


def _messages(path: Path, reader: Reader, store: Any, connections: Sequence[Any]) -> Iterator[tuple[Any, int, Any]]:
    """(connection, bag time ns, deserialized message) of ``connections`` in bag order; anything rosbags
    raises on damaged data (ReaderError, SerdeError, OverflowError, MemoryError...) becomes one BagError."""
    messages = reader.messages(connections=connections)
    count = 0
    while True:
        try:
            conn, t, raw = next(messages)
        except StopIteration:
            return
        except Exception as exc:
            raise BagError(f'{path}: unreadable message data after {count} messages ({_describe(exc)}); '
                           'expected intact MCAP records: the bag is damaged or truncated') from exc
        try:
            msg = store.deserialize_cdr(raw, conn.msgtype)
        except Exception as exc:
            raise BagError(f'{path}: {conn.topic} message at bag time {t} ns cannot be deserialized '
                           f'({_describe(exc)}); expected CDR data of {conn.msgtype}: the bag is damaged') from exc
        count += 1
        yield conn, t, msg


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _quats(qs: Sequence[Any]) -> np.ndarray:
    return np.array([[q.x, q.y, q.z, q.w] for q in qs], dtype=np.float64).reshape(-1, 4)


def _matrices(xyzw: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation
    if len(xyzw) == 0:
        return np.zeros((0, 3, 3))
    return Rotation.from_quat(xyzw).as_matrix()


class _PoseCollector:
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.stamps: list[int] = []
        self.times: list[int] = []
        self.orbit: list[np.ndarray] = []
        self.probe: list[np.ndarray] = []
        self.sigma2: list[float] = []
        self.inference: list[float] = []
        self.member_orbit: list[np.ndarray | None] = []
        self.member_probe: list[np.ndarray | None] = []

    def add(self, msg: Any, t: int) -> None:
        self.stamps.append(_stamp_ns(msg.header))
        self.times.append(t)
        self.orbit.append(_quats([msg.orbit])[0])
        self.probe.append(_quats([msg.probe])[0])
        self.sigma2.append(float(msg.uncertainty))
        self.inference.append(float(msg.inference_time))
        members = len(msg.member_orbit) and len(msg.member_orbit) == len(msg.member_probe)
        self.member_orbit.append(_quats(msg.member_orbit) if members else None)
        self.member_probe.append(_quats(msg.member_probe) if members else None)

    def series(self, path: Path) -> PoseSeries | None:
        if not self.stamps:
            return None
        from ..geometry import project_to_so3
        try:
            orbit, probe = _matrices(np.array(self.orbit)), _matrices(np.array(self.probe))
            mo, mp = orbit.copy(), probe.copy()
            for i, (qo, qp) in enumerate(zip(self.member_orbit, self.member_probe)):
                if qo is not None:
                    mo[i] = project_to_so3(_matrices(qo).mean(axis=0))
                    mp[i] = project_to_so3(_matrices(qp).mean(axis=0))
        except ValueError as exc:  # scipy: zero-norm or non-finite quaternions
            raise BagError(f'{path}: {self.topic}: {exc}; expected unit quaternions (x, y, z, w)') from exc
        return PoseSeries(self.topic, np.array(self.stamps, np.int64), np.array(self.times, np.int64), orbit,
                          probe, np.array(self.sigma2), np.array(self.inference), mo, mp)


def iter_image_batches(path: str | Path, topic: str, batch_size: int = 64,
                       skipped: MutableMapping[str, int] | None = None
                       ) -> Iterator[tuple[list[np.ndarray], list[str], np.ndarray]]:
    """Decoded images of ``topic`` in bag order, ``batch_size`` at a time: (arrays, encodings, header
    stamps int64 ns). For long bags: memory stays at one batch (see ``read_bag(load_images=False)``).

    ``skipped``: when given, a frame that cannot be decoded (unknown encoding, short data, not a
    PNG / JPEG) is left out and counted in it by reason ({reason: frames}); when None, it is a BagError.
    """
    path = Path(path)
    store = make_typestore()
    reader = open_bag(path)
    try:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns or conns[0].msgtype not in IMAGE_TYPES:
            raise BagError(f'{path}: no image topic {topic}; expected one of type {" or ".join(IMAGE_TYPES)}')
        resolve_types(path, reader, store, conns)
        images: list[np.ndarray] = []
        encodings: list[str] = []
        stamps: list[int] = []
        for index, (conn, _, msg) in enumerate(_messages(path, reader, store, conns)):
            try:
                array, enc = _decode_image(msg, conn.msgtype)
            except _Undecodable as exc:
                if skipped is None:
                    raise BagError(f'{path}: {topic} message {index}: {exc.reason}') from exc
                skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
                continue
            images.append(array)
            encodings.append(enc)
            stamps.append(_stamp_ns(msg.header))
            if len(images) == batch_size:
                yield images, encodings, np.array(stamps, np.int64)
                images, encodings, stamps = [], [], []
        if images:
            yield images, encodings, np.array(stamps, np.int64)
    finally:
        reader.close()


def read_pose_stamped(path: str | Path, topic: str = PROBE_POSE_TOPIC) -> ProbePoseSeries:
    """Every ``geometry_msgs/PoseStamped`` of ``topic`` (the arm's probe pose, e.g. ``/probe/pose``), in bag
    order; BagError when the topic is missing, of another type, empty, holds non-unit quaternions, or
    changes ``frame_id`` (poses in two frames cannot be compared)."""
    path = Path(path)
    store = make_typestore()
    reader = open_bag(path)
    try:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            have = sorted({c.topic for c in reader.connections})
            raise BagError(f'{path}: no topic {topic}; expected the probe pose (geometry_msgs/msg/PoseStamped); '
                           f'the bag has {have}')
        if conns[0].msgtype != 'geometry_msgs/msg/PoseStamped':
            raise BagError(f'{path}: topic {topic} is {conns[0].msgtype}; expected geometry_msgs/msg/PoseStamped')
        resolve_types(path, reader, store, conns)
        stamps, times, pos, quat, frames = [], [], [], [], set()
        for _, t, msg in _messages(path, reader, store, conns):
            stamps.append(_stamp_ns(msg.header))
            times.append(t)
            p, q = msg.pose.position, msg.pose.orientation
            pos.append((p.x, p.y, p.z))
            quat.append((q.x, q.y, q.z, q.w))
            frames.add(str(msg.header.frame_id))
    finally:
        reader.close()
    if not stamps:
        raise BagError(f'{path}: topic {topic} has no messages')
    if len(frames) > 1:
        raise BagError(f'{path}: {topic} poses in several frames {sorted(frames)}; expected one fixed frame')
    q = np.array(quat, dtype=np.float64)
    norm = np.linalg.norm(q, axis=1)
    if not (np.all(np.isfinite(q)) and np.all(np.abs(norm - 1.0) < 1e-3)):
        i = int(np.argmax(~np.isfinite(norm) | (np.abs(norm - 1.0) >= 1e-3)))
        raise BagError(f'{path}: {topic} message {i}: quaternion norm {norm[i]:.4g}; expected unit (x, y, z, w)')
    return ProbePoseSeries(topic, frames.pop(), np.array(stamps, np.int64), np.array(times, np.int64),
                           np.array(pos, dtype=np.float64), _matrices(q))


def read_bag(path: str | Path, image_topic: str | None = None, load_images: bool = True) -> BagContents:
    """Read an echoposed bag (see the module docstring). ``image_topic``: which image topic
    (default: ``/probe/image``, else ``/probe/image/compressed``, else the first image topic).
    ``load_images=False`` reads only image stamps and times (no decoding); with images, a frame
    that cannot be decoded is a BagError (``iter_image_batches`` can skip and count such frames)."""
    path = Path(path)
    store = make_typestore()
    reader, integrity = _open_checked(path)
    try:
        conns = reader.connections
        topic_types = {c.topic: c.msgtype for c in conns}
        counts = {c.topic: 0 for c in conns}
        for c in conns:
            counts[c.topic] += c.msgcount
        image_name = _pick_image_topic(path, topic_types, counts, image_topic)
        wanted = {image_name, TRUTH_TOPIC, POSE_TOPIC, COMMAND_TOPIC, STATUS_TOPIC}
        use = [c for c in conns if c.topic in wanted]
        img_stamps: list[int] = []
        img_times: list[int] = []
        images: list[np.ndarray] = []
        encodings: list[str] = []
        truth, poses = _PoseCollector(TRUTH_TOPIC), _PoseCollector(POSE_TOPIC)
        cmd_t: list[int] = []
        cmd_v: list[tuple[float, ...]] = []
        st_t: list[int] = []
        st_state: list[str] = []
        st_err: list[float] = []
        st_sigma: list[float] = []
        st_target: list[str] = []
        expected = {TRUTH_TOPIC: 'echoposed_msgs/msg/EchoPose', POSE_TOPIC: 'echoposed_msgs/msg/EchoPose',
                    COMMAND_TOPIC: 'echoposed_msgs/msg/ProbeTwist',
                    STATUS_TOPIC: 'echoposed_msgs/msg/GuidanceStatus'}
        for c in use:
            if c.topic in expected and c.msgtype != expected[c.topic]:
                raise BagError(f'{path}: topic {c.topic} is {c.msgtype}; expected {expected[c.topic]}')
        resolve_types(path, reader, store, use)
        index = 0
        for conn, t, msg in _messages(path, reader, store, use):
            topic = conn.topic
            if topic == image_name:
                img_stamps.append(_stamp_ns(msg.header))
                img_times.append(t)
                if load_images:
                    try:
                        array, enc = _decode_image(msg, conn.msgtype)
                    except _Undecodable as exc:
                        raise BagError(f'{path}: {topic} message {index}: {exc.reason}') from exc
                    images.append(array)
                    encodings.append(enc)
                index += 1
            elif topic == TRUTH_TOPIC:
                truth.add(msg, t)
            elif topic == POSE_TOPIC:
                poses.add(msg, t)
            elif topic == COMMAND_TOPIC:
                cmd_t.append(t)
                cmd_v.append((msg.orbit.x, msg.orbit.y, msg.orbit.z, msg.probe.x, msg.probe.y, msg.probe.z))
            elif topic == STATUS_TOPIC:
                st_t.append(t)
                st_state.append(str(msg.state_name))
                st_err.append(float(msg.effective_error))
                st_sigma.append(float(msg.uncertainty))
                st_target.append(str(msg.target))
        if not img_stamps:
            raise BagError(f'{path}: image topic {image_name} has no messages')
        start = int(reader.start_time) if reader.message_count else 0
        duration = (int(reader.end_time) - start) * 1e-9 if reader.message_count else 0.0
    finally:
        reader.close()
    custom = _custom_data(path)
    cmd = np.array(cmd_v, dtype=np.float64).reshape(-1, 6)
    return BagContents(
        path=path, topics=topic_types, counts=counts, start_ns=start, duration_s=duration,
        images=ImageSeries(image_name, np.array(img_stamps, np.int64), np.array(img_times, np.int64), images,
                           encodings),
        truth=truth.series(path), poses=poses.series(path),
        commands=CommandSeries(COMMAND_TOPIC, np.array(cmd_t, np.int64), cmd[:, :3], cmd[:, 3:]) if cmd_t else None,
        status=StatusSeries(STATUS_TOPIC, np.array(st_t, np.int64), st_state, np.array(st_err), np.array(st_sigma),
                            st_target) if st_t else None,
        custom=custom, integrity=integrity)


def _custom_data(path: Path) -> dict[str, str]:
    """``custom_data`` of metadata.yaml ({} when absent)."""
    meta = path / 'metadata.yaml' if path.is_dir() else None
    if meta is None or not meta.is_file():
        return {}
    import yaml
    try:
        info = (yaml.safe_load(meta.read_text()) or {}).get('rosbag2_bagfile_information', {})
    except yaml.YAMLError:
        return {}
    return {str(k): str(v) for k, v in (info.get('custom_data') or {}).items()}
