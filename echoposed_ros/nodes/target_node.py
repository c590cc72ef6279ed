"""One-shot node ``echoposed_target``: sets the controller's target to a simulator standard view.

Asks the simulator for the named view (``sim/standard_view``, end-diastole) and hands it to the
controller (``guidance/set_target``): by default as an image target (KIND_IMAGE), which the
controller estimates through the pose node, so the target lives in the same (unknown) frame as
the live estimates; with ``kind: pose`` as the view's ground-truth pose (KIND_POSE), for a
controller fed the simulator's ground truth (the launch's ``estimator:=oracle``). Exits 0 when
the target is set, 1 with one clear line when it cannot be.

A request that gets no answer within ``retry_after`` is sent again (both services are idempotent)
until ``timeout``: a response can be lost while discovery is still matching the server's reply
writer with the client (wait_for_service only sees the request side); one launch in 40 of the
ROS benchmark under load waited out its whole run on one lost answer.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import rclpy
from echoposed_msgs.srv import SetTarget, StandardView
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node

from ..config.params import Param
from .errors import NodeError
from .params import declare_all
from .process import run_node

__all__ = ['PARAMS', 'main', 'set_view_target']

PARAMS = (
    Param('view', 'A4C', 'standard view to guide to: A4C, A2C or A3C', read_only=True),
    Param('kind', 'image', "'image': the view's image, estimated by the pose node; 'pose': the view's "
          'ground-truth pose (only for a controller fed ground truth)', read_only=True),
    Param('cardiac_phase', 0.0, 'cardiac phase of the target image, cycles in [0, 1) (0 = end-diastole)',
          read_only=True),
    Param('cine_frames', 20, "image targets: also send the view over one cardiac cycle, this many frames at phases "
          "k / N (SetTarget.cine: the controller's fine alignment matches each live frame with its phase); "
          '0 = the image alone', read_only=True),
    Param('bag', '', 'a bag holding the target view: the frames from clip_start for clip_seconds become the '
          "image target and its cine (the simulator's view is not asked for); empty = the simulator's view",
          read_only=True),
    Param('bag_image_topic', '', "image topic of the bag; empty = the bag's one image topic", read_only=True),
    Param('clip_start', 0.0, "s from the bag's start where the clip begins", read_only=True),
    Param('clip_seconds', 1.0, 's, length of the clip (about one cardiac cycle)', read_only=True),
    Param('timeout', 60.0, 's, how long to wait for the simulator and the controller', read_only=True),
    Param('retry_after', 10.0, 's, a request unanswered this long is sent again (more than the '
          "controller's estimate_timeout, which an image target may take)", read_only=True),
)


def _call(node: Node, executor: Executor, client: Any, request: Any, timeout: float, what: str,
          retry_after: float) -> Any:
    """The service's response; the request is re-sent every ``retry_after`` s until ``timeout`` s."""
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not client.wait_for_service(timeout_sec=left):
            raise NodeError(f'{what} is not available after {timeout:g} s' if attempts == 0 else
                               f'{what} did not answer within {timeout:g} s ({attempts} requests)')
        attempts += 1
        future = client.call_async(request)
        executor.spin_until_future_complete(future, min(retry_after, max(deadline - time.monotonic(), 0.0)))
        if future.done() and future.result() is not None:
            return future.result()
        client.remove_pending_request(future)
        if time.monotonic() < deadline:
            node.get_logger().warning(f'{what} gave no answer within {retry_after:g} s; asking again')


@contextmanager
def _clients(node: Node, *services: tuple[Any, str]) -> Iterator[tuple[Executor, list[Any]]]:
    """A single-threaded executor spinning ``node`` (its own context, spun here only) and a client per
    ``(type, name)``; both are torn down on the way out."""
    clients = [node.create_client(kind, name) for kind, name in services]
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        yield executor, clients
    finally:
        executor.remove_node(node)
        executor.shutdown()
        for client in clients:
            node.destroy_client(client)


def _send_target(node: Node, executor: Executor, client: Any, request: SetTarget.Request, timeout: float,
                 retry_after: float, what: str) -> str:
    """``guidance/set_target`` with ``request``: its answer's message, or NodeError naming ``what``."""
    done = _call(node, executor, client, request, timeout, 'guidance/set_target', retry_after)
    if not done.success:
        raise NodeError(f'guidance/set_target refused {what}: {done.message}')
    return done.message


def set_view_target(node: Node, view: str, cardiac_phase: float, timeout: float, kind: str = 'image',
                    retry_after: float = 10.0, cine_frames: int = 0) -> str:
    """Fetch the view from the simulator and set it as the controller's target (image or pose; an image
    target with ``cine_frames`` > 0 also carries the view over one cycle); each request is re-sent after
    ``retry_after`` s without an answer, for up to ``timeout`` s."""
    if cine_frames < 0:
        raise NodeError(f'cine_frames = {cine_frames}; expected >= 0 (0 = the image alone)')
    if kind not in ('image', 'pose'):
        raise NodeError(f"kind = {kind!r}; expected 'image' or 'pose'")
    if not (retry_after > 0 and timeout > 0):
        raise NodeError(f'retry_after = {retry_after:g} s, timeout = {timeout:g} s; expected both > 0')
    with _clients(node, (StandardView, 'sim/standard_view'), (SetTarget, 'guidance/set_target')) as (
            executor, (views, targets)):
        def fetch(phase: float) -> Any:
            got = _call(node, executor, views, StandardView.Request(view=view, cardiac_phase=phase), timeout,
                        'sim/standard_view', retry_after)
            if not got.success:
                raise NodeError(f'sim/standard_view refused {view!r} at phase {phase:g}: {got.message}')
            return got

        got = fetch(cardiac_phase)
        if kind == 'image':
            request = SetTarget.Request(kind=SetTarget.Request.KIND_IMAGE, image=got.image, view=view)
            request.cine = [fetch(k / cine_frames).image for k in range(cine_frames)]
        else:
            request = SetTarget.Request(kind=SetTarget.Request.KIND_POSE, orbit=got.pose.orbit, probe=got.pose.probe,
                                        view=view)
        message = _send_target(node, executor, targets, request, timeout, retry_after, f'the {view} image')
    return f'target {view} set ({message})'


def set_clip_target(node: Node, bag: str, start_s: float, seconds: float, topic: str, timeout: float,
                    retry_after: float = 10.0) -> str:
    """Set the frames of ``bag`` from ``start_s`` for ``seconds`` as the controller's image target, the first
    frame as the image and all of them as its cine."""
    from echoposed_msgs.msg import EchoPose

    from ..bag.clip import read_clip
    from .convert import array_to_image_msg
    frames = read_clip(bag, start_s, seconds, topic or None)
    header = EchoPose().header
    header.frame_id = 'probe'
    request = SetTarget.Request(kind=SetTarget.Request.KIND_IMAGE, image=array_to_image_msg(frames[0], header))
    request.cine = [array_to_image_msg(f, header) for f in frames]
    with _clients(node, (SetTarget, 'guidance/set_target')) as (executor, (targets,)):
        message = _send_target(node, executor, targets, request, timeout, retry_after, f'the clip of {bag}')
    return f'target set from {bag} ({len(frames)} frames from {start_s:g} s; {message})'


def _set_target(node: Node) -> None:
    """The node's job: its parameters -> :func:`set_view_target`, the outcome logged."""
    p = declare_all(node, PARAMS)
    if p['bag']:
        node.get_logger().info(set_clip_target(node, p['bag'], float(p['clip_start']), float(p['clip_seconds']),
                                               p['bag_image_topic'], float(p['timeout']), float(p['retry_after'])))
        return
    node.get_logger().info(set_view_target(node, p['view'], float(p['cardiac_phase']), float(p['timeout']),
                                           p['kind'], float(p['retry_after']), int(p['cine_frames'])))


def main(args: list[str] | None = None) -> int:
    """Exit 0 when the target is set, 1 with one line when it cannot be, 130 when interrupted."""
    return run_node(lambda: rclpy.create_node('echoposed_target'), 'echoposed_target', args, job=_set_target)


if __name__ == '__main__':
    sys.exit(main())
