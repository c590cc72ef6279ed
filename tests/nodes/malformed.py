"""Malformed ``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` messages for flood tests: each
kind names what is wrong with it (import as ``from malformed import raw_kinds, compressed_kinds``)."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

__all__ = ['compressed_kinds', 'png_declaring', 'raw_kinds']


def png_declaring(width: int, height: int) -> bytes:
    """A 65-byte PNG whose header declares ``width`` x ``height`` grey pixels and whose data is empty."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b''))


def _encoded(pixels: np.ndarray, fmt: str) -> bytes:
    from PIL import Image as PILImage
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


def raw_kinds(height: int = 64, width: int = 64) -> dict[str, Image]:
    """Raw images of ``height`` x ``width`` (or claiming other sizes), each malformed one way."""
    good = np.random.default_rng(0).integers(0, 255, (height, width), dtype=np.uint8).tobytes()

    def mono8(**fields) -> Image:
        base = dict(height=height, width=width, encoding='mono8', step=width, data=good)
        return Image(**{**base, **fields})
    nan = np.full((height, width), 0.5, np.float32)
    nan[3, 4] = np.nan
    return {
        'data 17 bytes long': mono8(data=good + bytes(17)),
        'data 1 byte short': mono8(data=good[:-1]),
        'empty data': mono8(data=b''),
        'step shorter than a row': mono8(step=width - 1),
        'step longer than the data': mono8(step=width + 3),
        'zero size': mono8(height=0, width=0, step=0, data=b''),
        'unknown encoding': mono8(encoding='yuv422'),
        'empty encoding': mono8(encoding=''),
        'rgb8 on mono8 data': mono8(encoding='rgb8'),
        'mono16 on mono8 data': mono8(encoding='mono16'),
        'declares 5000 x 5000': mono8(height=5000, width=5000, step=5000),
        'declares 2^32-1 rows': mono8(height=2 ** 32 - 1),
        'all zero': mono8(data=bytes(height * width)),
        'constant grey': mono8(data=bytes([90]) * (height * width)),
        'NaN in 32FC1': Image(height=height, width=width, encoding='32FC1', step=4 * width, data=nan.tobytes()),
        '32FC1 with a mono8 step': Image(height=height, width=width, encoding='32FC1', step=width,
                                         data=nan.tobytes()),
    }


def compressed_kinds(height: int = 64, width: int = 64) -> dict[str, CompressedImage]:
    """Compressed images, each malformed one way (bombs, truncated or corrupted streams, blank frames)."""
    rng = np.random.default_rng(1)
    png = _encoded(rng.integers(0, 255, (height, width), dtype=np.uint8), 'PNG')
    jpeg = _encoded(rng.integers(0, 255, (height, width), dtype=np.uint8), 'JPEG')
    corrupt = bytearray(png)
    corrupt[len(corrupt) // 2:len(corrupt) // 2 + 16] = bytes(16)
    return {
        'PNG bomb 20000 x 10000': CompressedImage(format='png', data=png_declaring(20000, 10000)),
        'PNG declaring 5000 x 5000': CompressedImage(format='png', data=png_declaring(5000, 5000)),
        'truncated PNG': CompressedImage(format='png', data=png[:len(png) // 2]),
        'truncated JPEG': CompressedImage(format='jpeg', data=jpeg[:len(jpeg) // 2]),
        'JPEG header only': CompressedImage(format='jpeg', data=jpeg[:20]),
        'corrupted PNG': CompressedImage(format='png', data=bytes(corrupt)),
        'random bytes': CompressedImage(format='png', data=rng.integers(0, 255, 300, dtype=np.uint8).tobytes()),
        'empty': CompressedImage(format='png', data=b''),
        'a GIF': CompressedImage(format='gif', data=b'GIF89a' + bytes(40)),
        'all-zero PNG': CompressedImage(format='png', data=_encoded(np.zeros((height, width), np.uint8), 'PNG')),
    }
