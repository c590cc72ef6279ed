"""Declaring a node's parameter table (:class:`~echoposed_ros.config.params.Param` rows) on a
ROS 2 node, with descriptions, and letting its writable rows change at run time; the tables and
their offline YAML reader are in :mod:`echoposed_ros.config.params`."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..config.params import Param
from ..errors import EchoposedError

__all__ = ['declare_all', 'watch_parameters']

Config = TypeVar('Config')


def declare_all(node: Any, params: Sequence[Param]) -> dict[str, Any]:
    """Declare every parameter on ``node`` (with descriptions; read-only rows as read-only) and
    return {name: value}."""
    from rcl_interfaces.msg import ParameterDescriptor

    values: dict[str, Any] = {}
    for p in params:
        descriptor = ParameterDescriptor(description=p.description, read_only=p.read_only)
        values[p.name] = node.declare_parameter(p.name, p.default, descriptor).value
    return values


def watch_parameters(node: Any, params: Sequence[Param], check: Callable[[dict[str, Any]], Config],
                     apply: Callable[[Config], None]) -> None:
    """Let ``node``'s writable parameters change while it runs (``ros2 param set``).

    A request is checked as a whole: ``check(values)`` builds the node's config from the current
    values overlaid by the requested ones. When it raises an :class:`EchoposedError`, the request
    is refused with that message as the reason and nothing changes; otherwise, once rclpy has set
    the values, ``apply(check(values))`` hands the new config to the node. rclpy itself refuses a
    read-only parameter and a value of another type.
    """
    from rcl_interfaces.msg import SetParametersResult

    names = [p.name for p in params]

    def current() -> dict[str, Any]:
        return {name: node.get_parameter(name).value for name in names}

    def on_set(requested: list[Any]) -> SetParametersResult:
        values = current()
        values.update({p.name: p.value for p in requested if p.name in values})
        try:
            check(values)
        except EchoposedError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def on_post_set(_: list[Any]) -> None:
        apply(check(current()))

    node.add_on_set_parameters_callback(on_set)
    node.add_post_set_parameters_callback(on_post_set)
