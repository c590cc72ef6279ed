"""Integrity of MCAP files: record framing, chunk CRC-32s and the summary CRC-32, checked before reading.

rosbags reads an MCAP file through its summary (chunk index) and trusts the offsets and sizes it
finds; damaged bytes then surface as arbitrary exceptions (``OverflowError``, ``MemoryError``,
``struct.error``) or, inside a chunk written without a CRC, as silently wrong messages.
:func:`verify_summary` checks the footer's summary CRC-32 (when not 0) before rosbags parses the
summary; :func:`verify_mcap` then checks every chunk of an open rosbags ``McapReader``'s index:
inside the data section, a chunk record (opcode 0x06) of the indexed length, the compressed size
inside the record, decompressible to the stated size, the CRC-32 (zlib / IEEE 802.3) of the
uncompressed records when not 0, and every record in it framed within the chunk.

A CRC of 0 means "not computed" (MCAP spec): such chunks (bags of older recorders, rosbags'
own writer) get the framing checks only. Offsets are bytes from the start of the file.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BagError

__all__ = ['CHUNK_CRC_OFFSET', 'FOOTER_SIZE', 'McapCheck', 'verify_mcap', 'verify_summary']

#: Byte offset of the CRC field in a chunk record: opcode (1) + record length (8) + message start and
#: end time (16) + uncompressed size (8).
CHUNK_CRC_OFFSET = 33
#: Footer record (opcode 1 + length 8 + summary start 8 + summary offset start 8 + summary CRC 4) + magic (8).
FOOTER_SIZE = 37
_OP_CHUNK, _OP_MESSAGE = 0x06, 0x05
_MESSAGE_HEADER = 22  # channel id 2 + sequence 4 + log time 8 + publish time 8


@dataclass(frozen=True)
class McapCheck:
    """What :func:`verify_mcap` checked: ``chunks`` indexed chunks, ``crc_checked`` of them with a
    stored CRC-32; ``summary_crc_checked``: the footer held a summary CRC-32."""

    chunks: int = 0
    crc_checked: int = 0
    summary_crc_checked: bool = False

    def __add__(self, other: McapCheck) -> McapCheck:
        return McapCheck(self.chunks + other.chunks, self.crc_checked + other.crc_checked,
                         self.summary_crc_checked or other.summary_crc_checked)


def verify_summary(path: Path, name: str) -> bool:
    """Check the summary section of the MCAP file ``path`` (with a footer) before rosbags parses it: its
    records framed up to the footer, and its CRC-32 when the footer holds one; BagError naming ``name``
    (the bag) otherwise. True when the CRC was checked (0: not computed)."""
    where = f'{name}: {path.name}'
    try:
        with path.open('rb') as fh:
            return _verify_summary(fh, fh.seek(0, 2), where)
    except OSError as exc:
        raise BagError(f'{where}: cannot be read: {exc}') from exc


def _verify_summary(fh: Any, size: int, where: str) -> bool:
    footer_at = size - FOOTER_SIZE
    if footer_at < 8:
        return False
    fh.seek(footer_at)
    footer = fh.read(FOOTER_SIZE)
    summary_start = int.from_bytes(footer[9:17], 'little')
    crc = int.from_bytes(footer[25:29], 'little')
    if not summary_start:
        return False
    if not 8 <= summary_start <= footer_at:
        raise BagError(f'{where}: the footer places the summary at byte {summary_start}; expected an offset '
                       f'between 8 and the footer at byte {footer_at}: the file is damaged')
    fh.seek(summary_start)
    summary = fh.read(size - 12 - summary_start)
    if crc:
        computed = zlib.crc32(summary)
        if computed != crc:
            raise BagError(f'{where}: summary section (bytes {summary_start} to {size - 12}): CRC-32 mismatch '
                           f'(stored 0x{crc:08x}, computed 0x{computed:08x}); expected equal: the file is damaged '
                           'or bytes were inserted or removed')
    pos, end = 0, footer_at - summary_start
    while pos < end:
        n = int.from_bytes(summary[pos + 1:pos + 9], 'little')
        if pos + 9 > end or pos + 9 + n > end:
            raise BagError(f'{where}: summary record (opcode 0x{summary[pos]:02x}, {n} bytes) at byte '
                           f'{summary_start + pos} runs past the footer at byte {footer_at}; expected records that '
                           'end at the footer: the file is damaged or bytes were inserted or removed')
        pos += 9 + n
    return bool(crc)


def _verify_chunk(fh: Any, chunk: Any, data_start: int, data_end: int, where: str) -> bool:
    """Check one indexed chunk (a rosbags ``ChunkInfo``); True when its CRC was checked."""
    from rosbags.rosbag2.storage_mcap import DECOMPRESSORS

    offset, length = chunk.chunk_start_offset, chunk.chunk_length
    if not (data_start <= offset and length >= 9 + 40 and offset + length <= data_end):
        raise BagError(f'{where} ({length} bytes, as indexed): outside the data section '
                       f'(bytes {data_start} to {data_end}); expected a chunk record there: the summary is damaged')
    fh.seek(offset)
    head = fh.read(9 + 28 + 4)
    op, record = head[0], int.from_bytes(head[1:9], 'little')
    if op != _OP_CHUNK or record + 9 != length:
        raise BagError(f'{where}: found opcode 0x{op:02x} with a {record}-byte record; expected a chunk record '
                       f'(opcode 0x06) of {length - 9} bytes as indexed: the file is damaged')
    _start, _end, size, crc = struct.unpack('<QQQI', head[9:37])
    name_len = int.from_bytes(head[37:41], 'little')
    if name_len > 16:
        raise BagError(f'{where}: compression name of {name_len} bytes; expected lz4, zstd or none: '
                       'the file is damaged')
    compression = fh.read(name_len).decode('utf-8', 'replace')
    compressed_size = int.from_bytes(fh.read(8), 'little')
    records_at = offset + 9 + 40 + name_len
    if compression not in DECOMPRESSORS or records_at + compressed_size > offset + length:
        raise BagError(f'{where}: compression {compression!r}, {compressed_size} compressed bytes; expected lz4, '
                       f'zstd or none within the {length}-byte record: the file is damaged')
    data = fh.read(compressed_size)
    try:
        raw = DECOMPRESSORS[compression](data, size)
    except Exception as exc:  # lz4 / zstd on damaged input: their own error types
        raise BagError(f'{where}: {compression} data cannot be decompressed ({type(exc).__name__}: {exc}): '
                       'the file is damaged') from exc
    if len(raw) != size:
        raise BagError(f'{where}: {len(raw)} bytes of records; expected {size}: the file is damaged')
    if crc:
        computed = zlib.crc32(raw)
        if computed != crc:
            raise BagError(f'{where}: CRC-32 mismatch (stored 0x{crc:08x}, computed 0x{computed:08x}); expected '
                           'equal: the chunk is damaged')
    pos = 0
    while pos < size:
        if pos + 9 > size:
            raise BagError(f'{where}: a record header at byte {pos} of its {size} bytes of records is cut; '
                           'expected whole records: the file is damaged')
        op, n = raw[pos], int.from_bytes(raw[pos + 1:pos + 9], 'little')
        if pos + 9 + n > size or (op == _OP_MESSAGE and n < _MESSAGE_HEADER):
            raise BagError(f'{where}: record (opcode 0x{op:02x}, {n} bytes) at byte {pos} of its {size} bytes of '
                           'records; expected a record that fits the chunk: the file is damaged')
        pos += 9 + n
    return bool(crc)


def verify_mcap(storage: Any, name: str) -> McapCheck:
    """Check the indexed chunks of an open rosbags ``McapReader`` (``storage``; the summary CRC is
    :func:`verify_summary`'s, checked before opening); BagError naming ``name`` (the bag), the file,
    the chunk and its byte offset, and what was expected. Returns what was checked."""
    path = Path(storage.path)
    where = f'{name}: {path.name}'
    try:
        with path.open('rb') as fh:
            checked = 0
            for i, chunk in enumerate(storage.chunks):
                checked += _verify_chunk(fh, chunk, storage.data_start, storage.data_end,
                                         f'{where}: chunk {i} at byte {chunk.chunk_start_offset}')
    except OSError as exc:
        raise BagError(f'{where}: cannot be read: {exc}') from exc
    return McapCheck(len(storage.chunks), checked)
