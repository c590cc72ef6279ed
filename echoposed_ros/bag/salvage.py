"""Recovering a truncated MCAP bag (``echoposed bag salvage BAG OUT``).

A recorder killed before it closed its bag leaves an MCAP file without summary and footer (and no
``metadata.yaml``); a copied or cut file ends mid-record. :func:`salvage` reads such a file record by
record from the start, keeps every complete message (loose or inside a complete chunk; chunks
uncompressed, zstd or lz4) and writes them into a new, complete bag (MCAP + metadata.yaml) with the
same topics and types. Reading stops at the first incomplete or malformed record; what came
before it is kept.
"""
from __future__ import annotations

import struct
from pathlib import Path

from .errors import BagError
from .reader import MCAP_MAGIC
from .writer import BagWriter

__all__ = ['salvage']

_OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK, _OP_FOOTER = 0x03, 0x04, 0x05, 0x06, 0x02


class _Cut(Exception):
    """The data ends inside a record."""


class _Buf:
    def __init__(self, data: bytes | memoryview) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise _Cut
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return struct.unpack('<H', self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack('<I', self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack('<Q', self.take(8))[0]

    def string(self) -> str:
        return bytes(self.take(self.u32())).decode('utf-8')

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _records(buf: _Buf, out: dict, nested: bool = False) -> None:
    """Parse records from ``buf`` into out['schemas'|'channels'|'messages'] until the end or a cut."""
    while buf.left:
        start = buf.pos
        try:
            op = buf.take(1)[0]
            body = _Buf(buf.take(buf.u64()))
        except _Cut:
            buf.pos = start
            raise
        if op == _OP_FOOTER:
            return
        if op == _OP_SCHEMA:
            sid = body.u16()
            name, _encoding = body.string(), body.string()
            out['schemas'][sid] = (name, bytes(body.take(body.u32())).decode('utf-8', 'replace'))
        elif op == _OP_CHANNEL:
            cid, sid = body.u16(), body.u16()
            topic = body.string()
            out['channels'][cid] = (topic, sid)
        elif op == _OP_MESSAGE:
            cid, _seq, log_time, _pub = body.u16(), body.u32(), body.u64(), body.u64()
            out['messages'].append((cid, log_time, bytes(body.take(body.left))))
        elif op == _OP_CHUNK and not nested:
            body.u64(), body.u64()
            size, crc = body.u64(), body.u32()
            compression = body.string()
            records = body.take(body.u64())
            if compression:
                from rosbags.rosbag2.storage_mcap import decompress  # zstd and lz4, as rosbags reads them
                records = decompress(bytes(records), compression, size, crc)
            _records(_Buf(records), out, nested=True)


def salvage(path: str | Path, out: str | Path) -> dict[str, int]:
    """Copy every complete message of the bag (directory or .mcap) at ``path`` into a new bag ``out``.

    Returns {topic: messages kept}. BagError when nothing can be recovered.
    """
    path = Path(path)
    files = sorted(path.glob('*.mcap')) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise BagError(f'{path}: no .mcap file to salvage')
    found: dict = {'schemas': {}, 'channels': {}, 'messages': []}
    for f in files:
        data = f.read_bytes()
        if data[:8] != MCAP_MAGIC:
            raise BagError(f'{path}: {f.name} is not an MCAP file (bad magic)')
        buf = _Buf(data)
        buf.take(8)
        try:
            _records(buf, found)
        except (_Cut, struct.error, UnicodeDecodeError):
            pass  # keep what came before the cut
    if not found['messages']:
        raise BagError(f'{path}: nothing to salvage (no complete message before the file ends)')
    counts: dict[str, int] = {}
    with BagWriter(out) as writer:
        topics: dict[int, str] = {}
        for cid, (topic, sid) in found['channels'].items():
            msgtype, definition = found['schemas'].get(sid, ('', ''))
            if not msgtype:
                continue
            try:
                writer.add_topic(topic, msgtype)
            except BagError:
                from rosbags.typesys import get_types_from_msg
                writer.store.register(get_types_from_msg(definition, msgtype))
                writer.add_topic(topic, msgtype)
            topics[cid] = topic
            counts[topic] = 0
        for cid, log_time, raw in sorted(found['messages'], key=lambda m: m[1]):
            if cid in topics:
                writer.write(topics[cid], log_time, raw)
                counts[topics[cid]] += 1
    return counts
