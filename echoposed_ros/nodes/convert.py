"""Messages <-> numpy for the nodes (the only place that knows both).

Quaternions in messages are ``geometry_msgs/Quaternion`` (x, y, z, w); rotations in the cores
are (3, 3) float64 matrices. Images in the cores are numpy arrays ``(H, W)`` or ``(H, W, 3)``
with a ROS encoding name beside them.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from echoposed_msgs.msg import EchoPose
from geometry_msgs.msg import Quaternion, Vector3
from sensor_msgs.msg import CompressedImage, Image

from ..estimator.errors import EstimatorError
from ..estimator.image import decode_buffer
from ..geometry import matrix_to_quat_xyzw, quat_xyzw_to_matrix

__all__ = ['array_to_image_msg', 'compressed_msg_to_array', 'echopose_msg', 'echopose_msg_to_pose',
           'image_msg_to_array', 'matrix_to_quaternion_msg', 'quaternion_msg_to_matrix', 'vector3_msg']


def quaternion_msg_to_matrix(q: Quaternion, what: str = 'quaternion') -> np.ndarray:
    """``geometry_msgs/Quaternion`` (x, y, z, w) -> (3, 3) rotation; ValueError if zero or NaN."""
    return quat_xyzw_to_matrix(np.array([q.x, q.y, q.z, q.w], dtype=np.float64), what)


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


def image_msg_to_array(msg: Image, name: str = 'image') -> tuple[np.ndarray, str]:
    """``sensor_msgs/Image`` -> (array, encoding), validated.

    Raises EstimatorError (a ValueError) naming the problem: unknown encoding, zero size, step or
    data length that disagree, NaN / inf in a float image.
    """
    array = decode_buffer(msg.data, msg.encoding, msg.height, msg.width, msg.step,
                          bool(msg.is_bigendian), name=name)
    if array.dtype.kind == 'f' and not np.all(np.isfinite(array)):
        raise EstimatorError(f'{name}: {msg.encoding} image holds NaN or inf pixels')
    return array, msg.encoding


def compressed_msg_to_array(msg: CompressedImage, name: str = 'image') -> tuple[np.ndarray, str]:
    """``sensor_msgs/CompressedImage`` (PNG or JPEG) -> (array, 'mono8' | 'rgb8' | 'mono16')."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(bytes(msg.data))) as img:
            img.load()
            if img.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
                return np.asarray(img, dtype=np.uint16), 'mono16'
            if img.mode in ('L', 'P', '1', 'LA'):
                return np.asarray(img.convert('L')), 'mono8'
            return np.asarray(img.convert('RGB')), 'rgb8'
    except (OSError, ValueError, SyntaxError) as exc:
        raise EstimatorError(f'{name}: compressed image (format {msg.format!r}, {len(msg.data)} bytes) '
                             f'could not be decoded as PNG or JPEG: {exc}') from exc


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
