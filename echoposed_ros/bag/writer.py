"""Writing rosbag2 bags (MCAP storage, metadata.yaml) from serialized messages; no rclpy.

:class:`BagWriter` wraps ``rosbags.rosbag2.Writer``: topics are added with their ROS type name
(``pkg/msg/Name``; definitions and type hashes come from :func:`typestore`), messages are
written as CDR bytes with a timestamp in ns (the receive time, as ``ros2 bag record`` does).
``flush()`` closes the pending MCAP chunk and flushes the file, so a recorder that is killed
loses at most what came since its last flush; ``close()`` writes the MCAP summary and footer
and ``metadata.yaml``, which ``ros2 bag info/play`` and Foxglove need.

Checksums: every chunk record carries the CRC-32 of its uncompressed records and the footer the
CRC-32 of the summary section (the MCAP spec's fields; rosbags' own writer leaves them 0, "not
computed"), so :func:`~.integrity.verify_mcap` detects damage when the bag is read.
"""
from __future__ import annotations

import threading
import zlib
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

from .errors import BagError
from .integrity import CHUNK_CRC_OFFSET, FOOTER_SIZE
from .typestore import ensure_type, typestore

__all__ = ['BAG_VERSION', 'BagWriter']

#: rosbag2 metadata version written (9: Jazzy and later read it; rosbags writes 8 or 9).
BAG_VERSION = 9


class BagWriter:
    """A rosbag2 directory ``path`` (must not exist) with MCAP storage.

    Thread-safe: ``write`` may come from executor threads while ``close`` comes from shutdown.
    ``custom_data``: string key/values stored in metadata.yaml (``custom_data``).
    """

    def __init__(self, path: str | Path, store: Any | None = None,
                 custom_data: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.store = typestore() if store is None else store
        self._lock = threading.Lock()
        try:   # rosbags refuses an existing path already here
            self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
            for key, value in (custom_data or {}).items():
                self._writer.set_custom_data(key, str(value))
            self._writer.open()
        except (WriterError, OSError) as exc:
            raise BagError(f'{self.path}: cannot create the bag: {exc}') from exc
        _write_chunk_crcs(self._writer.storage)
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.closed = False

    @property
    def topics(self) -> dict[str, str]:
        """{topic: type} added so far."""
        return {t: c.msgtype for t, c in self._connections.items()}

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Add a topic (absolute name) of ROS type ``pkg/msg/Name``; BagError if the type is unknown."""
        with self._lock:
            if topic in self._connections:
                return
            ensure_type(self.store, msgtype)
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store)
            self.counts[topic] = 0

    def set_custom_data(self, key: str, value: str) -> None:
        with self._lock:
            self._writer.set_custom_data(key, str(value))

    def write(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        """Append one CDR-serialized message of ``topic`` at ``timestamp_ns`` (ns since the epoch)."""
        with self._lock:
            if self.closed:
                return
            self._writer.write(self._connections[topic], int(timestamp_ns), data)
            self.counts[topic] += 1

    def write_message(self, topic: str, timestamp_ns: int, message: Any) -> None:
        """Serialize a rosbags message object of the topic's type and append it."""
        msgtype = self._connections[topic].msgtype
        self.write(topic, timestamp_ns, self.store.serialize_cdr(message, msgtype))

    def flush(self) -> None:
        """Write the pending chunk and flush the file (what is flushed survives a kill)."""
        with self._lock:
            storage = self._writer.storage
            if self.closed or storage is None:
                return
            if storage.chunk.bio.tell():
                storage.close_chunk()
            storage.bio.flush()

    def close(self) -> None:
        """Write the MCAP summary, footer and metadata.yaml; idempotent."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            mcap = self._writer.storage.path
            self._writer.close()
            _write_summary_crc(mcap)

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _write_chunk_crcs(storage: Any) -> None:
    """Make the rosbags MCAP ``storage`` (its ``close_chunk`` writes CRC 0) store each chunk's CRC-32.

    The CRC (zlib, of the uncompressed records) is computed before rosbags writes the chunk record at
    the end of the file, then written into the record's CRC field in place.
    """
    close_chunk = storage.close_chunk

    def close_chunk_with_crc() -> None:
        start = storage.bio.tell()
        with storage.chunk.bio.getbuffer() as records:
            crc = zlib.crc32(records)
        close_chunk()
        end = storage.bio.tell()
        storage.bio.seek(start + CHUNK_CRC_OFFSET)
        storage.bio.write(crc.to_bytes(4, 'little'))
        storage.bio.seek(end)

    storage.close_chunk = close_chunk_with_crc


def _write_summary_crc(mcap: Path) -> None:
    """Write the footer's summary CRC-32 of a closed MCAP file (bytes from the summary start through
    the footer's ``summary_offset_start`` field); nothing when the file has no summary."""
    with mcap.open('r+b') as fh:
        size = fh.seek(0, 2)
        fh.seek(size - FOOTER_SIZE)
        footer = fh.read(FOOTER_SIZE)
        summary_start = int.from_bytes(footer[9:17], 'little')
        if not summary_start:
            return
        fh.seek(summary_start)
        crc = zlib.crc32(fh.read(size - 12 - summary_start))
        fh.seek(size - 12)
        fh.write(crc.to_bytes(4, 'little'))
