"""Messages <-> numpy for the nodes (the only place that knows both).

Quaternions in messages are ``geometry_msgs/Quaternion`` (x, y, z, w); rotations in the cores
are (3, 3) float64 matrices. Images in the cores are numpy arrays ``(H, W)`` or ``(H, W, 3)``
with a ROS encoding name beside them.
"""
from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from echoposed_msgs.msg import EchoPose
from geometry_msgs.msg import Quaternion, Vector3
from sensor_msgs.msg import CompressedImage, Image

from ..estimator.errors import EstimatorError
from ..estimator.image import MAX_PIXELS, check_pixel_count, decode_buffer
from ..geometry import matrix_to_quat_xyzw, quat_xyzw_to_matrix

__all__ = ['array_to_compressed_msg', 'array_to_image_msg', 'compressed_msg_to_array', 'echopose_msg',
           'echopose_msg_to_pose', 'image_msg_to_array', 'matrix_to_quaternion_msg', 'pose_stamped_to_arrays',
           'quaternion_msg_to_matrix', 'stamp_ns', 'vector3_msg']


def quaternion_msg_to_matrix(q: Quaternion, what: str = 'quaternion') -> np.ndarray:
    """``geometry_msgs/Quaternion`` (x, y, z, w) -> (3, 3) rotation; ValueError if zero or NaN."""
    return quat_xyzw_to_matrix(np.array([q.x, q.y, q.z, q.w], dtype=np.float64), what)


def pose_stamped_to_arrays(msg: Any, what: str = 'pose') -> tuple[np.ndarray, np.ndarray]:
    """``geometry_msgs/PoseStamped`` -> (orientation (3, 3), position (3,)); ValueError naming ``what`` when
    the quaternion is zero or NaN or the position is not finite."""
    R = quaternion_msg_to_matrix(msg.pose.orientation, f'{what} orientation')
    p = msg.pose.position
    position = np.array([p.x, p.y, p.z], dtype=np.float64)
    if not np.all(np.isfinite(position)):
        raise ValueError(f'{what} position {position.tolist()}: expected finite numbers (m)')
    return R, position


def stamp_ns(header: Any) -> int:
    """A header's stamp in int nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def matrix_to_quaternion_msg(r: np.ndarray) -> Quaternion:
    """(3, 3) rotation -> ``geometry_msgs/Quaternion`` (x, y, z, w), w >= 0."""
    x, y, z, w = (float(v) for v in matrix_to_quat_xyzw(np.asarray(r, dtype=np.float64)))
    return Quaternion(x=x, y=y, z=z, w=w)


def vector3_msg(v: np.ndarray) -> Vector3:
    x, y, z = (float(c) for c in np.asarray(v, dtype=np.float64).reshape(3))
    return Vector3(x=x, y=y, z=z)


def echopose_msg(header: Any, orbit: np.ndarray, probe: np.ndarray, sigma2: float = 0.0,
                 member_orbits: np.ndarray | None = None, member_probes: np.ndarray | None = None,
                 inference_s: float = 0.0) -> EchoPose:
    """Fill an EchoPose (header copied as given: it carries the source image's stamp)."""
    msg = EchoPose()
    msg.header = header
    msg.orbit = matrix_to_quaternion_msg(orbit)
    msg.probe = matrix_to_quaternion_msg(probe)
    msg.uncertainty = float(sigma2)
    if member_orbits is not None and member_probes is not None:
        msg.member_orbit = [matrix_to_quaternion_msg(r) for r in member_orbits]
        msg.member_probe = [matrix_to_quaternion_msg(r) for r in member_probes]
    msg.inference_time = float(inference_s)
    return msg


def echopose_msg_to_pose(msg: EchoPose) -> tuple[np.ndarray, np.ndarray]:
    """EchoPose -> (orbit, probe) rotation matrices; ValueError on a zero or NaN quaternion."""
    return (quaternion_msg_to_matrix(msg.orbit, 'EchoPose.orbit'),
            quaternion_msg_to_matrix(msg.probe, 'EchoPose.probe'))


def image_msg_to_array(msg: Image, name: str = 'image', max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str]:
    """``sensor_msgs/Image`` -> (array, encoding), validated.

    Raises EstimatorError (a ValueError) naming the problem: unknown encoding, zero size or more
    than ``max_pixels`` pixels, step too short for a row, data length other than
    ``height * step``, NaN / inf in a float image.
    """
    check_pixel_count(msg.height, msg.width, name, max_pixels)
    if len(msg.data) != msg.height * msg.step:
        raise EstimatorError(f'{name}: data holds {len(msg.data)} bytes, expected height * step = '
                             f'{msg.height} * {msg.step} = {msg.height * msg.step}')
    array = decode_buffer(msg.data, msg.encoding, msg.height, msg.width, msg.step,
                          bool(msg.is_bigendian), name=name)
    if array.dtype.kind == 'f' and not np.all(np.isfinite(array)):
        raise EstimatorError(f'{name}: {msg.encoding} image holds NaN or inf pixels')
    return array, msg.encoding


def compressed_msg_to_array(msg: CompressedImage, name: str = 'image',
                            max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str]:
    """``sensor_msgs/CompressedImage`` (PNG or JPEG) -> (array, 'mono8' | 'rgb8' | 'mono16').

    The declared size is checked before anything is decoded: more than ``max_pixels`` pixels is
    refused (a 65-byte PNG can declare 20000 x 10000). Any decoder failure (not PNG or JPEG,
    truncated, corrupt, over-sized) is an EstimatorError naming the message's format and size.
    """
    from PIL import Image as PILImage

    data = bytes(msg.data)
    what = f'{name}: compressed image (format {msg.format!r}, {len(data)} bytes)'
    if not data:
        raise EstimatorError(f'{what}: no data; expected a PNG or JPEG stream')
    try:
        with warnings.catch_warnings():
            # pillow's own bomb guard warns, then raises, above its limit: both are a refused input here
            warnings.simplefilter('error', PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data), formats=('PNG', 'JPEG')) as img:
                width, height = img.size
                check_pixel_count(height, width, what, max_pixels)
                img.load()
                if img.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
                    array = np.asarray(img)
                    if array.dtype != np.uint16:
                        if array.size and (array.min() < 0 or array.max() > 65535):
                            raise EstimatorError(f'{what}: {img.mode} values outside 0..65535')
                        array = array.astype(np.uint16)
                    return array, 'mono16'
                if img.mode in ('L', 'P', '1', 'LA'):
                    return np.asarray(img.convert('L')), 'mono8'
                return np.asarray(img.convert('RGB')), 'rgb8'
    except EstimatorError:
        raise
    except PILImage.UnidentifiedImageError:
        raise EstimatorError(f'{what}: not a PNG or JPEG stream') from None
    except Exception as exc:   # any decoder failure is a bad input, never the node's end
        raise EstimatorError(f'{what} could not be decoded as PNG or JPEG: {type(exc).__name__}: {exc}') from exc


def array_to_image_msg(image: np.ndarray, header: Any) -> Image:
    """float32 (H, W) in [0, 1] or uint8 (H, W) -> mono8 ``sensor_msgs/Image``."""
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f'expected a (H, W) image, got shape {a.shape}')
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(a.shape[0]), int(a.shape[1])
    msg.encoding = 'mono8'
    msg.is_bigendian = 0
    msg.step = int(a.shape[1])
    msg.data = np.ascontiguousarray(a).tobytes()
    return msg


def array_to_compressed_msg(image: np.ndarray, header: Any, compress_level: int = 1) -> CompressedImage:
    """float32 (H, W) in [0, 1] or uint8 (H, W) -> ``sensor_msgs/CompressedImage``: a PNG of the mono8
    frame, ``format`` ``'mono8; png compressed '`` as image_transport's compressed plugin writes it
    (lossless: :func:`compressed_msg_to_array` gives back the mono8 array). ``compress_level``: zlib
    level 0-9 (1: fastest)."""
    from PIL import Image as PILImage

    raw = array_to_image_msg(image, header)
    buffer = io.BytesIO()
    PILImage.frombuffer('L', (raw.width, raw.height), bytes(raw.data), 'raw', 'L', 0, 1).save(
        buffer, format='PNG', compress_level=int(compress_level))
    msg = CompressedImage()
    msg.header = header
    msg.format = 'mono8; png compressed '
    msg.data = buffer.getvalue()
    return msg
