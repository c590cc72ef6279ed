"""Declaring a node's parameter table (:class:`~echoposed_ros.config.params.Param` rows) on a
ROS 2 node, with descriptions; the tables and their offline YAML reader are in
:mod:`echoposed_ros.config.params`."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config.params import Param

__all__ = ['declare_all']


def declare_all(node: Any, params: Sequence[Param]) -> dict[str, Any]:
    """Declare every parameter on ``node`` (with descriptions) and return {name: value}."""
    from rcl_interfaces.msg import ParameterDescriptor

    values: dict[str, Any] = {}
    for p in params:
        descriptor = ParameterDescriptor(description=p.description, read_only=p.read_only)
        values[p.name] = node.declare_parameter(p.name, p.default, descriptor).value
    return values
