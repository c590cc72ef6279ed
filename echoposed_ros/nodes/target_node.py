"""One-shot node ``echoposed_target``: sets the controller's target to a simulator standard view.

Asks the simulator for the named view (``sim/standard_view``, end-diastole) and hands it to the
controller (``guidance/set_target``): by default as an image target (KIND_IMAGE), which the
controller estimates through the pose node, so the target lives in the same (unknown) frame as
the live estimates; with ``kind: pose`` as the view's ground-truth pose (KIND_POSE), for a
controller fed the simulator's ground truth (the launch's ``estimator:=oracle``). Exits 0 when
the target is set, 1 with one clear line when it cannot be.
"""
from __future__ import annotations

import sys
from typing import Any

import rclpy
from echoposed_msgs.srv import SetTarget, StandardView
from rclpy.node import Node

from .params import Param, declare_all

__all__ = ['PARAMS', 'main', 'set_view_target']

PARAMS = (
    Param('view', 'A4C', 'standard view to guide to: A4C, A2C or A3C', read_only=True),
    Param('kind', 'image', "'image': the view's image, estimated by the pose node; 'pose': the view's "
          'ground-truth pose (only for a controller fed ground truth)', read_only=True),
    Param('cardiac_phase', 0.0, 'cardiac phase of the target image, cycles in [0, 1) (0 = end-diastole)',
          read_only=True),
    Param('timeout', 60.0, 's, how long to wait for the simulator and the controller', read_only=True),
)


def _call(node: Node, client: Any, request: Any, timeout: float, what: str) -> Any:
    if not client.wait_for_service(timeout_sec=timeout):
        raise RuntimeError(f'{what} is not available after {timeout:g} s')
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    if not future.done() or future.result() is None:
        raise RuntimeError(f'{what} did not answer within {timeout:g} s')
    return future.result()


def set_view_target(node: Node, view: str, cardiac_phase: float, timeout: float, kind: str = 'image') -> str:
    """Fetch the view from the simulator and set it as the controller's target (image or pose)."""
    if kind not in ('image', 'pose'):
        raise ValueError(f"kind = {kind!r}; expected 'image' or 'pose'")
    views = node.create_client(StandardView, 'sim/standard_view')
    targets = node.create_client(SetTarget, 'guidance/set_target')
    got = _call(node, views, StandardView.Request(view=view, cardiac_phase=cardiac_phase), timeout,
                'sim/standard_view')
    if not got.success:
        raise RuntimeError(f'sim/standard_view refused {view!r}: {got.message}')
    if kind == 'image':
        request = SetTarget.Request(kind=SetTarget.Request.KIND_IMAGE, image=got.image, view=view)
    else:
        request = SetTarget.Request(kind=SetTarget.Request.KIND_POSE, orbit=got.pose.orbit, probe=got.pose.probe,
                                    view=view)
    done = _call(node, targets, request, timeout, 'guidance/set_target')
    if not done.success:
        raise RuntimeError(f'guidance/set_target refused the {view} image: {done.message}')
    return f'target {view} set ({done.message})'


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = rclpy.create_node('echoposed_target')
    try:
        p = declare_all(node, PARAMS)
        message = set_view_target(node, p['view'], float(p['cardiac_phase']), float(p['timeout']), p['kind'])
        node.get_logger().info(message)
        return 0
    except (RuntimeError, ValueError) as exc:
        print(f'echoposed_target: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
