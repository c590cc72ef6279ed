"""A ROS domain id reserved for the life of a process, so test runs and isolated launches on one
machine never share one (``tests/conftest.py``, ``echoposed launch --isolated``).

A domain id is reserved by holding an exclusive ``flock`` on ``<lock_dir>/echoposed-ros-domain-<id>.lock``
through a file kept open: another reservation (in this process or any other) finds it taken, and the
kernel releases it when the file is closed or the process ends, crash included. Child processes do
not inherit the lock (the file is not inheritable); they inherit the id through ``ROS_DOMAIN_ID``.
"""
from __future__ import annotations

import fcntl
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .description import LaunchError

__all__ = ['DOMAIN_IDS', 'LOCK_DIR', 'DomainError', 'DomainReservation', 'lock_path', 'reserve_domain']

# Domain ids 1..101 are safe on Linux with the default port mapping (each maps to its own ports).
DOMAIN_IDS = range(1, 102)
# One directory for every user and every TMPDIR, so all runs on the machine see each other's locks.
LOCK_DIR = Path('/tmp')


class DomainError(LaunchError):
    """No domain id of those asked for is free."""


@dataclass
class DomainReservation:
    """A held domain id; :meth:`release` (or leaving the ``with`` block) frees it."""

    domain_id: int
    path: Path
    _file: IO[str] | None = field(repr=False)

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        """Free the id (closing the file drops the lock); a second call does nothing."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> DomainReservation:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_path(domain_id: int, lock_dir: Path = LOCK_DIR) -> Path:
    """The lock file that reserves ``domain_id``."""
    return Path(lock_dir) / f'echoposed-ros-domain-{domain_id}.lock'


def _try_lock(path: Path) -> IO[str] | None:
    """The open, exclusively locked file at ``path``, or None where another holder has it (or it
    cannot be opened, e.g. another user's file without write permission)."""
    try:
        f = open(path, 'a+')
    except OSError:
        return None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    try:
        os.chmod(path, 0o666)  # other users' runs can lock it too (fails harmlessly if not ours)
    except OSError:
        pass
    f.seek(0)
    f.truncate()
    f.write(f'{os.getpid()}\n')  # for a person looking at who holds it; the lock is what counts
    f.flush()
    return f


def reserve_domain(ids: Iterable[int] = DOMAIN_IDS, lock_dir: Path = LOCK_DIR,
                   rng: random.Random | None = None) -> DomainReservation:
    """Reserve the first free id of ``ids``, tried in a random order (``rng``; system randomness by
    default) so that concurrent callers seldom contend for one lock (the lock alone decides who gets
    it). Raises DomainError when every id is held, ValueError when ``ids`` is empty."""
    order = list(ids)
    if not order:
        raise ValueError('reserve_domain: ids is empty; expected at least one ROS domain id')
    (rng or random.SystemRandom()).shuffle(order)
    for domain_id in order:
        path = lock_path(domain_id, lock_dir)
        f = _try_lock(path)
        if f is not None:
            return DomainReservation(domain_id, path, f)
    raise DomainError(
        f'no free ROS domain: all {len(order)} ids in {min(order)}..{max(order)} are reserved by other '
        f'processes (lock files {Path(lock_dir)}/echoposed-ros-domain-<id>.lock); expected at least one '
        'free: end some of the test runs or isolated launches that hold them')
