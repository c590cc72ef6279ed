"""Input images -> the model's input: intensity conversion and fan-to-fan resampling.

:func:`image_to_float` turns a ``sensor_msgs/Image``-style array into float32 ``(H, W)``
intensities in [0, 1]; :func:`decode_buffer` first turns a message's raw bytes into that
array. :func:`map_to_model` resamples an image whose fan is ``src`` (a :class:`FanGeometry`)
so that its fan lands on the model's fan ``dst``: same apex, depth scaled to the model's
depth (or, given both depths in mm, the same mm per pixel), pixels outside the intersection of
the two fans set to 0 (a wider input fan is cropped to the model's angle; a narrower one stays
narrower, as in training's sector-angle cropping). Bilinear interpolation
(``scipy.ndimage.affine_transform``, order 1). See docs/estimator.md.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from .errors import EstimatorError
from .fan import FanGeometry

__all__ = ['ENCODINGS', 'IMAGE_SUFFIXES', 'MAX_PIXELS', 'check_not_blank', 'check_pixel_count', 'decode_buffer',
           'image_to_float', 'infer_encoding', 'is_identity', 'map_to_model', 'read_image_file']

#: Supported ``sensor_msgs/Image`` encodings: numpy dtype and channels of each.
ENCODINGS: dict[str, tuple[type, int]] = {
    'mono8': (np.uint8, 1),
    'mono16': (np.uint16, 1),
    'rgb8': (np.uint8, 3),
    'bgr8': (np.uint8, 3),
    '32FC1': (np.float32, 1),
}

#: Image file suffixes :func:`read_image_file` reads (lower case).
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.npy')

#: Most pixels (height * width) an input image may have: 4096 x 4096. A larger image, or a
#: compressed one that declares a larger size, is refused before it is decoded (a few bytes of
#: PNG can declare gigapixels); scanner frames are well below it.
MAX_PIXELS = 4096 * 4096

# ITU-R BT.601 luma weights for (R, G, B): a grey image drawn in colour (R = G = B) keeps its value.
_LUMA = np.array([0.299, 0.587, 0.114])


def infer_encoding(data: np.ndarray) -> str:
    """The encoding a bare numpy image most likely has: uint8 2D -> mono8, uint8 (H, W, 3) -> rgb8,
    uint16 -> mono16, floating -> 32FC1. Raises EstimatorError for anything else."""
    a = np.asarray(data)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        if a.dtype == np.uint8:
            return 'mono8'
        if a.dtype == np.uint16:
            return 'mono16'
        if np.issubdtype(a.dtype, np.floating):
            return '32FC1'
    elif a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8:
        return 'rgb8'
    raise EstimatorError(f'image of shape {a.shape} and dtype {a.dtype}: cannot tell its encoding; '
                         f'expected one of {", ".join(ENCODINGS)} (uint8 (H, W), uint16 (H, W), '
                         'uint8 (H, W, 3), float (H, W)) or pass the encoding')


def image_to_float(data: np.ndarray, encoding: str, name: str = 'image') -> np.ndarray:
    """float32 ``(H, W)`` intensities in [0, 1] of an image in a ``sensor_msgs/Image`` encoding.

    mono8: value / 255; mono16: value / 65535; rgb8 / bgr8 ``(H, W, 3)``: BT.601 luma / 255;
    32FC1: the values, clipped to [0, 1] (NaN or inf is an error). Single-channel data may be
    ``(H, W)`` or ``(H, W, 1)``. The dtype must match the encoding (uint8 for 8-bit, uint16 for
    mono16, float32 or float64 for 32FC1).
    """
    if encoding not in ENCODINGS:
        raise EstimatorError(f'{name}: encoding {encoding!r} is not supported; expected one of '
                             f'{", ".join(ENCODINGS)}')
    dtype, channels = ENCODINGS[encoding]
    a = np.asarray(data)
    if channels == 1 and a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    want = '(H, W)' if channels == 1 else f'(H, W, {channels})'
    if (channels == 1 and a.ndim != 2) or (channels > 1 and (a.ndim != 3 or a.shape[2] != channels)):
        raise EstimatorError(f'{name}: {encoding} image has shape {a.shape}, expected {want}')
    if encoding == '32FC1':
        if not np.issubdtype(a.dtype, np.floating):
            raise EstimatorError(f'{name}: 32FC1 image has dtype {a.dtype}, expected float32')
        if not np.isfinite(a).all():
            raise EstimatorError(f'{name}: 32FC1 image holds NaN or inf')
        return np.clip(a, 0.0, 1.0).astype(np.float32, copy=False)
    if a.dtype != dtype:
        raise EstimatorError(f'{name}: {encoding} image has dtype {a.dtype}, expected {np.dtype(dtype)}')
    if encoding == 'mono8':
        return a.astype(np.float32) / np.float32(255)
    if encoding == 'mono16':
        return a.astype(np.float32) / np.float32(65535)
    weights = _LUMA if encoding == 'rgb8' else _LUMA[::-1]
    grey = a.astype(np.float32) @ weights.astype(np.float32)
    return np.clip(grey / np.float32(255), 0.0, 1.0)


def check_pixel_count(height: int, width: int, name: str = 'image', max_pixels: int = MAX_PIXELS) -> None:
    """Raise EstimatorError unless ``height`` and ``width`` are positive and ``height * width <= max_pixels``."""
    if height <= 0 or width <= 0:
        raise EstimatorError(f'{name}: image size {height} x {width}; expected positive height and width')
    if height * width > max_pixels:
        raise EstimatorError(f'{name}: image size {height} x {width} = {height * width} pixels; expected at most '
                             f'{max_pixels} (MAX_PIXELS)')


def check_not_blank(grey: np.ndarray, threshold: float = 0.0, name: str = 'image') -> None:
    """Raise EstimatorError when a float image ``(H, W)`` in [0, 1] holds no picture: every pixel
    equal (an empty or constant frame), or none above ``threshold`` (the intensity above which a
    pixel counts as inside the fan)."""
    a = np.asarray(grey)
    if a.size == 0:
        raise EstimatorError(f'{name}: empty image of shape {a.shape}; expected an ultrasound frame')
    lo, hi = float(a.min()), float(a.max())
    if hi == lo:
        raise EstimatorError(f'{name}: blank frame (every pixel is {lo:.4g}); expected an ultrasound fan')
    if hi <= threshold:
        raise EstimatorError(f'{name}: blank frame (brightest pixel {hi:.4g} is not above the fan threshold '
                             f'{threshold:.4g}); expected an ultrasound fan')


def decode_buffer(buffer: bytes | bytearray | memoryview | np.ndarray, encoding: str, height: int,
                  width: int, step: int, is_bigendian: bool = False, name: str = 'image') -> np.ndarray:
    """Raw ``sensor_msgs/Image`` data -> numpy array ``(H, W)`` or ``(H, W, 3)`` (no copy when possible).

    ``step`` is the row length in bytes (rows may be padded); multi-byte pixels follow
    ``is_bigendian``. Raises EstimatorError when the buffer is shorter than ``height * step`` or
    ``step`` is shorter than a row.
    """
    if encoding not in ENCODINGS:
        raise EstimatorError(f'{name}: encoding {encoding!r} is not supported; expected one of '
                             f'{", ".join(ENCODINGS)}')
    dtype, channels = ENCODINGS[encoding]
    dt = np.dtype(dtype).newbyteorder('>' if is_bigendian else '<')
    raw = np.frombuffer(buffer, dtype=np.uint8) if not isinstance(buffer, np.ndarray) else buffer.view(np.uint8).ravel()
    row_bytes = width * channels * dt.itemsize
    if height <= 0 or width <= 0:
        raise EstimatorError(f'{name}: image size {height} x {width}; expected positive height and width')
    if step < row_bytes:
        raise EstimatorError(f'{name}: step {step} bytes is shorter than one {encoding} row of {width} '
                             f'pixels ({row_bytes} bytes)')
    if raw.size < height * step:
        raise EstimatorError(f'{name}: data holds {raw.size} bytes, expected height * step = '
                             f'{height} * {step} = {height * step}')
    rows = raw[:height * step].reshape(height, step)[:, :row_bytes]
    arr = np.ascontiguousarray(rows).view(dt).reshape((height, width) if channels == 1 else (height, width, channels))
    return arr.astype(dt.newbyteorder('='), copy=False)


def _affine(src: FanGeometry, dst: FanGeometry, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal matrix and offset taking dst pixel (row, col) to src pixel (row, col)."""
    a_r = scale * src.depth_rows / dst.depth_rows
    a_c = scale * src.depth_cols / dst.depth_cols
    offset = np.array([src.apex_row - a_r * dst.apex_row, src.apex_col - a_c * dst.apex_col])
    return np.array([a_r, a_c]), offset


def is_identity(src: FanGeometry, dst: FanGeometry, src_shape: tuple[int, int],
                dst_shape: tuple[int, int], atol: float = 1e-9) -> bool:
    """True when the resampling from ``src`` to ``dst`` would be the identity (same shape, same fan)."""
    return tuple(src_shape) == tuple(dst_shape) and all(
        abs(a - b) <= atol * max(1.0, abs(b)) for a, b in
        ((src.apex_row, dst.apex_row), (src.apex_col, dst.apex_col), (src.angle_rad, dst.angle_rad),
         (src.depth_rows, dst.depth_rows), (src.depth_cols, dst.depth_cols)))


def map_to_model(image: np.ndarray, src: FanGeometry, dst: FanGeometry, dst_shape: tuple[int, int],
                 src_depth_mm: float | None = None, dst_depth_mm: float | None = None) -> np.ndarray:
    """Resample ``image`` ``(H_in, W_in)`` (float, fan ``src``) onto the model's fan ``dst`` -> float32 ``dst_shape``.

    The apexes coincide and the fan axes align. Depth: by default the input's fan radius is
    scaled onto the model's; when both ``src_depth_mm`` and ``dst_depth_mm`` are given, mm are
    kept instead (an input shallower than the model fills only the top of the model's fan).
    Output pixels outside the model's fan or outside the input's fan (narrower angle, shorter
    depth) are 0. When source and destination are the same geometry and shape the image is
    returned unchanged (as float32), bit for bit.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise EstimatorError(f'image: expected (H, W) intensities, got shape {img.shape}')
    scale = 1.0
    if src_depth_mm is not None and dst_depth_mm is not None:
        if not (src_depth_mm > 0 and dst_depth_mm > 0):
            raise EstimatorError(f'depths must be positive mm, got input {src_depth_mm!r} and model {dst_depth_mm!r}')
        scale = dst_depth_mm / src_depth_mm   # model units of D -> input units of D
    if scale == 1.0 and is_identity(src, dst, img.shape, dst_shape):
        return img
    matrix, offset = _affine(src, dst, scale)
    out = ndimage.affine_transform(img, matrix, offset=offset, output_shape=tuple(dst_shape), order=1,
                                   mode='constant', cval=0.0, prefilter=False)
    angle = min(src.angle_rad, dst.angle_rad)
    keep = dst.mask(tuple(dst_shape), angle_rad=angle, radius=min(1.0, 1.0 / scale))
    out[~keep] = 0.0
    return out.astype(np.float32, copy=False)



def read_image_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, str]:
    """Read a PNG / JPEG (pillow) or NPY image file -> (array, encoding).

    8-bit grey -> mono8; 16-bit grey -> mono16; RGB(A) or palette -> rgb8 (alpha dropped);
    float images -> 32FC1. NPY arrays: uint8 / uint16 ``(H, W)``, uint8 ``(H, W, 3)`` (RGB)
    or float ``(H, W)`` (in [0, 1]). Raises EstimatorError naming the file otherwise.
    """
    p = Path(path)
    if not p.is_file():
        raise EstimatorError(f'image file {p}: no such file')
    suffix = p.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise EstimatorError(f'image file {p}: unsupported suffix {p.suffix!r}; expected one of '
                             f'{", ".join(IMAGE_SUFFIXES)}')
    if suffix == '.npy':
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise EstimatorError(f'image file {p}: not a readable .npy array ({exc})') from None
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if np.issubdtype(arr.dtype, np.floating) and arr.ndim == 2:
            return arr.astype(np.float32), '32FC1'
        try:
            return arr, infer_encoding(arr)
        except EstimatorError as exc:
            raise EstimatorError(f'image file {p}: {exc}') from None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im.load()
            mode = im.mode
            if mode in ('I;16', 'I;16B', 'I;16L', 'I'):
                arr = np.asarray(im)
                if arr.dtype != np.uint16:
                    if arr.min() < 0 or arr.max() > 65535:
                        raise EstimatorError(f'image file {p}: {mode} values outside 0..65535')
                    arr = arr.astype(np.uint16)
                return arr, 'mono16'
            if mode == 'F':
                return np.asarray(im, dtype=np.float32), '32FC1'
            if mode in ('L', '1', 'LA'):
                return np.asarray(im.convert('L'), dtype=np.uint8), 'mono8'
            return np.asarray(im.convert('RGB'), dtype=np.uint8), 'rgb8'
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise EstimatorError(f'image file {p}: not a readable image ({exc})') from None
