"""Writing rosbag2 bags (MCAP storage, metadata.yaml) from serialized messages; no rclpy.

:class:`BagWriter` wraps ``rosbags.rosbag2.Writer``: topics are added with their ROS type name
(``pkg/msg/Name``; definitions and type hashes come from :func:`typestore`), messages are
written as CDR bytes with a timestamp in ns (the receive time, as ``ros2 bag record`` does).
``flush()`` closes the pending MCAP chunk and flushes the file, so a recorder that is killed
loses at most what came since its last flush; ``close()`` writes the MCAP summary and footer
and ``metadata.yaml``, which ``ros2 bag info/play`` and Foxglove need.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

from .errors import BagError
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
            self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
