"""A rosbags typestore that knows echoposed's own messages (``echoposed_msgs/msg/*.msg``).

Starts from the closest stock store of the ROS 2 distribution the wheels are built from (Kilted)
and registers every ``.msg`` file of ``echoposed_msgs`` (the source checkout's
``echoposed_msgs/msg``, else the installed ``share/echoposed_msgs/msg``), so ``EchoPose``,
``ProbeTwist`` and ``GuidanceStatus`` serialise and deserialise without a ROS install.
:func:`ensure_type` adds any other installed message type (``share/<pkg>/msg/<Name>.msg``) on
demand, with the types it depends on.
"""
from __future__ import annotations

import sys
from functools import cache
from pathlib import Path
from typing import Any

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from .errors import BagError

__all__ = ['BASE_STORE', 'echoposed_msg_dir', 'ensure_type', 'make_typestore', 'typestore']

#: The stock rosbags store echoposed starts from (the wheels are ROS 2 Kilted).
BASE_STORE = Stores.ROS2_KILTED
MSGS_PACKAGE = 'echoposed_msgs'


def _share_dirs(package: str) -> list[Path]:
    """Candidate ``share/<package>`` folders: ament index first, then this interpreter's prefix."""
    found = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            found.append(Path(get_package_share_directory(package)))
        except (PackageNotFoundError, LookupError, ValueError, OSError):  # OSError: no AMENT_PREFIX_PATH
            pass
    except ImportError:  # pragma: no cover - ament_index_python ships with the ROS wheels
        pass
    found.append(Path(sys.prefix) / 'share' / package)
    return found


def echoposed_msg_dir() -> Path:
    """The folder holding ``EchoPose.msg`` etc.: the source checkout's, else the installed one."""
    from ..paths import repo_root

    root = repo_root()
    if root is not None and (root / MSGS_PACKAGE / 'msg' / 'EchoPose.msg').is_file():
        return root / MSGS_PACKAGE / 'msg'
    candidates = [d / 'msg' for d in _share_dirs(MSGS_PACKAGE)]
    for d in candidates:
        if (d / 'EchoPose.msg').is_file():
            return d
    looked = ([root / MSGS_PACKAGE / 'msg'] if root is not None else []) + candidates
    raise BagError(f'echoposed_msgs message definitions not found; looked in '
                   f'{", ".join(str(c) for c in looked)} (expected EchoPose.msg there)')


def _msg_types(path: Path, package: str) -> dict[str, Any]:
    name = f'{package}/msg/{path.stem}'
    try:
        return get_types_from_msg(path.read_text(), name)
    except Exception as exc:
        raise BagError(f'{path}: not a valid message definition for {name}: {exc}') from exc


def make_typestore() -> Any:
    """A new typestore: the stock Kilted types plus every echoposed_msgs message."""
    store = get_typestore(BASE_STORE)
    types: dict[str, Any] = {}
    for path in sorted(echoposed_msg_dir().glob('*.msg')):
        types.update(_msg_types(path, MSGS_PACKAGE))
    store.register(types)
    return store


@cache
def typestore() -> Any:
    """The shared typestore of this process (built once; :func:`ensure_type` may extend it)."""
    return make_typestore()


def _referenced(fields: Any) -> set[str]:
    """Message type names a rosbags field list refers to (nested, arrays, sequences)."""
    out: set[str] = set()

    def walk(desc: Any) -> None:
        kind, rest = desc
        if getattr(kind, 'name', '') == 'NAME':
            out.add(rest)
        elif getattr(kind, 'name', '') in ('ARRAY', 'SEQUENCE'):
            walk(rest[0])

    for _, desc in fields[1]:
        walk(desc)
    return out


def ensure_type(store: Any, msgtype: str) -> None:
    """Make ``msgtype`` (``pkg/msg/Name``) known to ``store``, reading installed ``.msg`` files.

    Raises :class:`BagError` naming the type and where it was looked for when it is not found.
    """
    pending = [msgtype]
    new: dict[str, Any] = {}
    while pending:
        name = pending.pop()
        if name in store.fielddefs or name in new:
            continue
        parts = name.split('/')
        if len(parts) != 3 or parts[1] != 'msg':
            raise BagError(f'message type {name!r}: expected package/msg/Name')
        looked = [d / 'msg' / f'{parts[2]}.msg' for d in _share_dirs(parts[0])]
        path = next((p for p in looked if p.is_file()), None)
        if path is None:
            raise BagError(f'unknown message type {name!r}: not in the rosbags {BASE_STORE.value} store nor '
                           f'installed (looked for {", ".join(str(p) for p in looked)})')
        types = _msg_types(path, parts[0])
        new.update(types)
        for fields in types.values():
            pending.extend(_referenced(fields))
    if new:
        store.register(new)
