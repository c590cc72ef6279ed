"""Recovering a truncated MCAP bag (``echoposed bag salvage BAG OUT``).

A recorder killed before it closed its bag leaves an MCAP file without summary and footer (and no
``metadata.yaml``); a copied or cut file ends mid-record. :func:`salvage` reads such a file record by
record from the start, keeps every complete message (loose or inside a complete chunk; chunks
uncompressed, zstd or lz4) and writes them into a new, complete bag (MCAP + metadata.yaml) with the
same topics and types. Reading stops at the first incomplete or malformed record; what came
before it is kept. A chunk whose CRC-32 does not match its records is damaged: it is left out
(counted in ``damaged_chunks``) and reading goes on after it.

The bag's ``custom_data`` (e.g. the target view the recorder stores) is carried over: from the
bag's ``metadata.yaml``, else from the rosbag2 metadata record inside the MCAP file (written when
the bag was closed). A recorder killed before closing its bag leaves neither:
:attr:`Salvaged.custom_source` is then empty and the caller says so.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BagError
from .reader import MCAP_MAGIC
from .typestore import make_typestore
from .writer import BagWriter

__all__ = ['Salvaged', 'salvage', 'salvage_bag']

_OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK, _OP_METADATA = 0x02, 0x03, 0x04, 0x05, 0x06, 0x0C


@dataclass(frozen=True)
class Salvaged:
    """What :func:`salvage_bag` kept: ``counts`` {topic: messages}; ``custom_data`` carried over and where it
    came from (``custom_source``: 'metadata.yaml', 'MCAP metadata record', or '' when none was found);
    ``damaged_chunks``: chunks left out because their CRC-32 did not match."""

    counts: dict[str, int]
    custom_data: dict[str, str] = field(default_factory=dict)
    custom_source: str = ''
    damaged_chunks: int = 0


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
        elif op == _OP_METADATA:
            name = body.string()
            fields = _Buf(body.take(body.u32()))
            values = {}
            while fields.left:
                key = fields.string()
                values[key] = fields.string()
            out['metadata'][name] = values
        elif op == _OP_CHUNK and not nested:
            body.u64(), body.u64()
            size, crc = body.u64(), body.u32()
            compression = body.string()
            records = body.take(body.u64())
            if compression:
                from rosbags.rosbag2.storage_mcap import decompress  # zstd and lz4, as rosbags reads them
                records = decompress(bytes(records), compression, size, 0)
            if crc and zlib.crc32(records) != crc:
                out['damaged'] += 1
                continue
            _records(_Buf(records), out, nested=True)


def _custom_data(values: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (values or {}).items()} if isinstance(values, dict) else {}


def _custom_from_yaml(text: str) -> dict[str, str] | None:
    """``custom_data`` of a rosbag2 metadata document (metadata.yaml, under ``rosbag2_bagfile_information``,
    or the MCAP metadata record's ``serialized_metadata``, without it); None when it is not one."""
    import yaml
    try:
        info = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if isinstance(info, dict) and 'rosbag2_bagfile_information' in info:
        info = info['rosbag2_bagfile_information']
    if not isinstance(info, dict) or 'storage_identifier' not in info:
        return None
    return _custom_data(info.get('custom_data'))


def _metadata_yaml(path: Path) -> Path | None:
    """The metadata.yaml describing the bag at ``path`` (its own, or a bare .mcap file's folder's when it lists
    that file)."""
    meta = path / 'metadata.yaml' if path.is_dir() else path.parent / 'metadata.yaml'
    if not meta.is_file():
        return None
    if path.is_dir() or path.name in meta.read_text(errors='replace'):
        return meta
    return None


def salvage(path: str | Path, out: str | Path) -> dict[str, int]:
    """Copy every complete message of the bag at ``path`` into a new bag ``out`` (see :func:`salvage_bag`).

    Returns {topic: messages kept}. BagError when nothing can be recovered.
    """
    return salvage_bag(path, out).counts


def salvage_bag(path: str | Path, out: str | Path) -> Salvaged:
    """Copy every complete message of the bag (directory or .mcap) at ``path``, and its ``custom_data``,
    into a new bag ``out``. BagError when nothing can be recovered."""
    path = Path(path)
    files = sorted(path.glob('*.mcap')) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise BagError(f'{path}: no .mcap file to salvage')
    found: dict = {'schemas': {}, 'channels': {}, 'messages': [], 'metadata': {}, 'damaged': 0}
    for f in files:
        data = f.read_bytes()
        if data[:8] != MCAP_MAGIC:
            raise BagError(f'{path}: {f.name} is not an MCAP file (bad magic)')
        buf = _Buf(data)
        buf.take(8)
        try:
            _records(buf, found)
        except Exception:  # a cut or malformed record (_Cut, struct.error, lz4 / zstd errors): keep what came before
            pass
    if not found['messages']:
        raise BagError(f'{path}: nothing to salvage (no complete message before the file ends)')
    custom, source = None, ''
    meta = _metadata_yaml(path)
    if meta is not None:
        custom, source = _custom_from_yaml(meta.read_text(errors='replace')), 'metadata.yaml'
    if custom is None and 'rosbag2' in found['metadata']:
        text = found['metadata']['rosbag2'].get('serialized_metadata', '')
        custom, source = _custom_from_yaml(text), 'MCAP metadata record'
    if custom is None:
        custom, source = {}, ''
    counts: dict[str, int] = {}
    with BagWriter(out, store=make_typestore(), custom_data=custom) as writer:
        topics: dict[int, str] = {}
        for cid, (topic, sid) in found['channels'].items():
            msgtype, definition = found['schemas'].get(sid, ('', ''))
            if not msgtype:
                continue
            try:
                writer.add_topic(topic, msgtype)
            except BagError:
                from rosbags.typesys import get_types_from_msg
                try:
                    writer.store.register(get_types_from_msg(definition, msgtype))
                except Exception as exc:  # rosbags' parser on a damaged or foreign definition
                    raise BagError(f'{path}: topic {topic}: type {msgtype} is not known and its definition in the '
                                   f'bag cannot be used ({type(exc).__name__}: {exc})') from exc
                writer.add_topic(topic, msgtype)
            topics[cid] = topic
            counts[topic] = 0
        for cid, log_time, raw in sorted(found['messages'], key=lambda m: m[1]):
            if cid in topics:
                writer.write(topics[cid], log_time, raw)
                counts[topics[cid]] += 1
    return Salvaged(counts, custom, source, found['damaged'])
