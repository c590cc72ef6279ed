"""Node parameters as one table per node, and the node's YAML file read without ROS.

Each node lists its parameters once as :class:`Param` rows (name, default, description with the
unit); the node declares them all (``echoposed_ros.nodes.params.declare_all``) and builds its
frozen config from the values. The table is also what the tests compare with the node's YAML
file in ``config/`` (:func:`yaml_parameters`), and what tools that run a node's core offline read
its settings through (:func:`configured_values`: the defaults, overlaid by the node's YAML file as
a launch would load it).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = ['Param', 'configured_values', 'yaml_parameters']


@dataclass(frozen=True)
class Param:
    """One parameter: name, default (fixes its type), description (say the unit)."""

    name: str
    default: bool | int | float | str | list
    description: str
    read_only: bool = False


def yaml_parameters(path: str | Path, node_name: str) -> dict[str, Any]:
    """The ``ros__parameters`` of ``node_name`` in a ROS 2 parameter YAML file."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    for key in (node_name, '/' + node_name, '/**'):
        if key in data:
            return dict(data[key].get('ros__parameters', {}))
    raise KeyError(f'{path}: no ros__parameters for node {node_name!r} (keys: {sorted(data)})')


def configured_values(params: Sequence[Param], path: str | Path, node_name: str) -> dict[str, Any]:
    """{name: value} as the node would run with ``path`` as its parameter file: the table's
    defaults, overlaid by the file's values (a missing file leaves the defaults). A key the table
    does not declare, or a value of another type than its default (rclpy refuses those too, e.g.
    ``1`` for a float), is a ConfigError naming it."""
    values = {p.name: p.default for p in params}
    path = Path(path)
    if not path.is_file():
        return values
    try:
        given = yaml_parameters(path, node_name)
    except (KeyError, yaml.YAMLError) as exc:
        raise ConfigError(f'{path}: {exc}') from None
    for key, value in given.items():
        if key not in values:
            raise ConfigError(f'{path}: {node_name} has no parameter {key!r} (declared: {", ".join(sorted(values))})')
        default = values[key]
        if type(value) is not type(default):
            raise ConfigError(f'{path}: {node_name}.{key} = {value!r}; expected a {type(default).__name__}')
        values[key] = value
    return values
