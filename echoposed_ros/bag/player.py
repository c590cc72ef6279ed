"""Republishing a bag with its recorded timing (``echoposed bag play BAG [--rate R]``).

Every message is published as its recorded CDR bytes (no deserialization; header stamps stay as
recorded unless ``restamp``) on its recorded topic, at ``start + (t - t_first) / rate`` of wall time, where ``t`` is
the bag (receive) time: the recorded spacing, scaled. Publishers are reliable with depth 100, which
both reliable and best-effort (sensor-data) subscribers accept. Before the first message the
player waits up to ``wait_s`` for every topic to have a subscriber, then ``SETTLE_S`` more
(discovery is two-sided), so the first messages are not published into the void.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..nodes.process import run_node
from .errors import BagError
from .reader import open_bag, resolve_types
from .recorder import message_class
from .typestore import typestore

__all__ = ['PLAY_QOS', 'SETTLE_S', 'main', 'play_bag']

#: s waited after every topic has a subscriber before the first message (discovery is two-sided).
SETTLE_S = 0.3

PLAY_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def _restamper(store: Any, msgtype: str) -> Callable[[bytes, int, int, float], bytes] | None:
    """(bytes, first_ns, start_ns, rate) -> bytes with ``header.stamp`` mapped to
    ``start_ns + (stamp - first_ns) / rate``, for types whose first field is a ``std_msgs/msg/Header``
    named ``header``; None for other types."""
    fields = store.fielddefs.get(msgtype, ((), ()))[1]
    if not fields or fields[0][0] != 'header' or fields[0][1][1] != 'std_msgs/msg/Header':
        return None
    Time = store.types['builtin_interfaces/msg/Time']

    def move(raw: bytes, first_ns: int, start_ns: int, rate: float) -> bytes:
        msg = store.deserialize_cdr(raw, msgtype)
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        ns = start_ns + round((stamp - first_ns) / rate)
        msg = replace(msg, header=replace(msg.header, stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)))
        return bytes(store.serialize_cdr(msg, msgtype))

    return move


def play_bag(node: Any, path: str | Path, rate: float = 1.0, topics: Sequence[str] | None = None,
             wait_s: float = 2.0, should_stop: Callable[[], bool] = lambda: False,
             restamp: bool = False) -> dict[str, int]:
    """Publish the bag's messages from ``node`` with the recorded spacing divided by ``rate``.

    ``topics``: only these (absolute or relative names; default all). ``restamp``: map every
    ``header.stamp`` to ``now + (stamp - t_first) / rate`` (t_first: bag time of the first played
    message), so stamps follow the playback clock, spacing and lag behind the bag time scaled like
    the playback; otherwise stamps are as recorded. Returns {topic: published}.
    """
    if not rate > 0:
        raise BagError(f'rate = {rate}; expected > 0')
    path = Path(path)
    reader = open_bag(path)
    try:
        resolve_types(path, reader, typestore())
        wanted = None if topics is None else {t if t.startswith('/') else '/' + t for t in topics}
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if wanted is not None and not conns:
            raise BagError(f'{path}: none of the topics {", ".join(sorted(wanted))} is in the bag '
                           f'(it has {", ".join(sorted({c.topic for c in reader.connections}))})')
        publishers = {}
        for c in conns:
            if c.topic not in publishers:
                publishers[c.topic] = node.create_publisher(message_class(c.msgtype), c.topic, PLAY_QOS)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not all(p.get_subscription_count() for p in publishers.values()):
            time.sleep(0.02)
        if time.monotonic() < deadline:  # matched on our side; give the subscribers' side time to match too
            time.sleep(min(SETTLE_S, deadline - time.monotonic()))
        counts = dict.fromkeys(publishers, 0)
        start = time.monotonic()
        first = None
        movers = {c.topic: _restamper(typestore(), c.msgtype) for c in conns} if restamp else {}
        start_ns = node.get_clock().now().nanoseconds
        try:
            for conn, t, raw in reader.messages(connections=conns):
                if should_stop():
                    break
                first = t if first is None else first
                delay = start + (t - first) * 1e-9 / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                move = movers.get(conn.topic)
                publishers[conn.topic].publish(move(bytes(raw), first, start_ns, rate) if move else bytes(raw))
                counts[conn.topic] += 1
        except (AssertionError, ValueError, OSError) as exc:
            raise BagError(f'{path}: unreadable message data while playing: {exc}') from exc
        return counts
    finally:
        reader.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m echoposed_ros.bag.player BAG [RATE]`` (the CLI is ``echoposed bag play``)."""
    import rclpy

    argv = sys.argv[1:] if argv is None else argv
    try:
        rate = float(argv[1]) if len(argv) > 1 else 1.0
    except ValueError:
        rate = None
    if not argv or rate is None:
        print('usage: python -m echoposed_ros.bag.player BAG [RATE]', file=sys.stderr)
        return 2

    def play(node: Any) -> None:
        counts = play_bag(node, argv[0], rate)
        print(f'echoposed_player: published {sum(counts.values())} messages')

    return run_node(lambda: rclpy.create_node('echoposed_player'), 'echoposed_player', job=play)


if __name__ == '__main__':
    sys.exit(main())
