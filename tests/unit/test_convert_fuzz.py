"""Fuzzing the message decoders of the nodes (echoposed_ros.nodes.convert) with malformed raw and
compressed images: every input either decodes to an array that agrees with its message, or is an
EstimatorError naming the input; nothing else escapes (a decoder error must never end a node)."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image

from echoposed_ros.estimator import ENCODINGS, MAX_PIXELS, EstimatorError
from echoposed_ros.nodes.convert import compressed_msg_to_array, image_msg_to_array

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

U32 = 2 ** 32 - 1
sizes = st.one_of(st.integers(0, 40), st.sampled_from([4096, 4097, 65536, U32]), st.integers(0, U32))
encodings = st.one_of(st.sampled_from(sorted(ENCODINGS)), st.sampled_from(['', 'yuv422', 'MONO8', '8UC1', '16UC1']),
                      st.text(max_size=8))


def png_declaring(width: int, height: int, depth: int = 8, colour: int = 0) -> bytes:
    """A PNG stream whose header declares ``width`` x ``height`` and whose image data is empty."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, depth, colour, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b''))


def encoded(fmt: str, shape=(24, 20), mode='L', seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (*shape, 3) if mode == 'RGB' else shape, dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(pixels, mode).save(buf, fmt)
    return buf.getvalue()


VALID = [encoded('PNG'), encoded('PNG', mode='RGB'), encoded('JPEG'), encoded('JPEG', mode='RGB')]


def check_raw(msg: Image) -> None:
    try:
        array, encoding = image_msg_to_array(msg, 'fuzz/image')
    except EstimatorError as exc:
        assert str(exc).startswith('fuzz/image: '), exc
        return
    dtype, channels = ENCODINGS[msg.encoding]
    assert encoding == msg.encoding and array.dtype == np.dtype(dtype)
    assert array.shape == ((msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels))
    assert len(msg.data) == msg.height * msg.step and msg.height * msg.width <= MAX_PIXELS
    if array.dtype.kind == 'f':
        assert np.isfinite(array).all()


def check_compressed(data: bytes, fmt: str = 'png') -> None:
    try:
        array, encoding = compressed_msg_to_array(CompressedImage(format=fmt, data=data), 'fuzz/compressed')
    except EstimatorError as exc:
        assert str(exc).startswith('fuzz/compressed: compressed image'), exc
        return
    assert encoding in ('mono8', 'mono16', 'rgb8')
    assert array.ndim == (3 if encoding == 'rgb8' else 2) and 0 < array.shape[0] * array.shape[1] <= MAX_PIXELS
    assert array.dtype == (np.uint16 if encoding == 'mono16' else np.uint8)


@FUZZ
@given(height=sizes, width=sizes, step=sizes, encoding=encodings, big=st.booleans(),
       data=st.binary(max_size=2048))
@example(height=128, width=128, step=128, encoding='mono8', big=False, data=bytes(128 * 128 + 17))
def test_any_raw_image_decodes_consistently_or_is_an_estimator_error(height, width, step, encoding, big, data):
    check_raw(Image(height=height, width=width, step=step, encoding=encoding, is_bigendian=int(big), data=data))


@FUZZ
@given(encoding=st.sampled_from(sorted(ENCODINGS)), height=st.integers(1, 12), width=st.integers(1, 12),
       pad=st.integers(0, 5), big=st.booleans(), seed=st.integers(0, 2 ** 16),
       mutation=st.sampled_from(['none', 'step-', 'step+', 'short', 'long', 'height', 'width', 'nan', 'empty']))
def test_a_well_formed_raw_image_with_one_field_broken(encoding, height, width, pad, big, seed, mutation):
    dtype, channels = ENCODINGS[encoding]
    itemsize = np.dtype(dtype).itemsize
    step = width * channels * itemsize + pad
    rng = np.random.default_rng(seed)
    data = bytearray(rng.integers(0, 256, height * step, dtype=np.uint8).tobytes())
    if encoding == '32FC1':   # finite floats unless the mutation asks for NaN
        row = np.linspace(0, 1, width, dtype=np.dtype(dtype).newbyteorder('>' if big else '<')).tobytes()
        for r in range(height):
            data[r * step:r * step + len(row)] = row
    msg = Image(height=height, width=width, step=step, encoding=encoding, is_bigendian=int(big))
    if mutation == 'step-':
        msg.step = max(step - pad - 1, 0)
    elif mutation == 'step+':
        msg.step = step + 1
    elif mutation == 'short':
        data = data[:-1]
    elif mutation == 'long':
        data = data + b'\x00' * 17
    elif mutation == 'height':
        msg.height = height + 1
    elif mutation == 'width':
        msg.width = width + pad + 1
    elif mutation == 'nan' and encoding == '32FC1':
        data[0:4] = np.array([np.nan], np.dtype('f4').newbyteorder('>' if big else '<')).tobytes()
    elif mutation == 'empty':
        data = bytearray()
    msg.data = bytes(data)
    check_raw(msg)
    if mutation == 'none' or (mutation == 'nan' and encoding != '32FC1'):
        array, _ = image_msg_to_array(msg)
        assert array.shape[:2] == (height, width)
    else:   # every broken field is refused (a wider row no longer fits the step)
        with pytest.raises(EstimatorError):
            image_msg_to_array(msg)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_any_bytes_as_a_compressed_image(data):
    check_compressed(data)


@FUZZ
@given(which=st.integers(0, len(VALID) - 1), cut=st.floats(0.0, 1.0), flips=st.lists(
    st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), max_size=6))
def test_truncated_and_corrupted_png_and_jpeg(which, cut, flips):
    data = bytearray(VALID[which][:max(1, int(len(VALID[which]) * cut))])
    for where, value in flips:
        data[int(where * len(data))] = value
    check_compressed(bytes(data), 'jpeg' if which >= 2 else 'png')


@FUZZ
@given(width=st.one_of(st.integers(0, 70000), st.sampled_from([20000, 2 ** 31 - 1])),
       height=st.one_of(st.integers(0, 70000), st.sampled_from([10000, 2 ** 31 - 1])),
       depth=st.sampled_from([1, 8, 16]), colour=st.sampled_from([0, 2, 4, 6]))
@example(width=20000, height=10000, depth=8, colour=0)   # the 65-byte bomb
def test_png_headers_declaring_any_size_never_escape(width, height, depth, colour):
    data = png_declaring(width, height, depth, colour)
    check_compressed(data)
    if width * height > MAX_PIXELS and not (depth == 1 and colour != 0):   # (1-bit is grey only)
        with pytest.raises(EstimatorError, match='pixels'):
            compressed_msg_to_array(CompressedImage(format='png', data=data))


def test_the_bomb_is_65_bytes_and_is_refused_as_too_large():
    data = png_declaring(20000, 10000)
    assert len(data) == 65
    with pytest.raises(EstimatorError, match=r"compressed image \(format 'png', 65 bytes\).*pixels"):
        compressed_msg_to_array(CompressedImage(format='png', data=data))


def test_valid_png_and_jpeg_decode():
    for data, enc in zip(VALID, ['mono8', 'rgb8', 'mono8', 'rgb8']):
        array, encoding = compressed_msg_to_array(CompressedImage(format='x', data=data))
        assert encoding == enc and array.shape[:2] == (24, 20)
    deep = io.BytesIO()
    PILImage.fromarray(np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).save(deep, 'PNG')
    array, encoding = compressed_msg_to_array(CompressedImage(format='png', data=deep.getvalue()))
    assert encoding == 'mono16' and array.dtype == np.uint16 and array[2, 3] == 55000
