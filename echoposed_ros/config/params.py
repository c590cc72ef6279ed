"""Node parameters as one table per node, and the node's YAML file read without ROS.

Each node lists its parameters once as :class:`Param` rows (name, default, description with the
unit); the node declares them all (``echoposed_ros.nodes.params.declare_all``) and builds its
frozen config from the values. The table is also what the tests compare with the node's YAML
file in ``config/`` (:func:`yaml_parameters`), and what tools that run a node's core offline read
its settings through (:func:`configured_values`: the defaults, overlaid by the node's YAML file as
a launch would load it). :func:`parameter_sections` and :func:`checked_values` read a parameter
file that holds several nodes (a launch's ``params_file``) and check its values against a table.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = ['Param', 'checked_values', 'configured_values', 'parameter_sections', 'yaml_parameters']


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


def parameter_sections(path: str | Path) -> dict[str, dict[str, Any]]:
    """{node key as written (``name``, ``/ns/name``, ``/**``): its ``ros__parameters``} of a ROS 2
    parameter YAML file; a ConfigError naming the file and the key when it is not of that form."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f'{path}: cannot be read as YAML: {exc}') from None
    form = 'expected node_name: {ros__parameters: {name: value, ...}}'
    if not isinstance(data, dict) or not data:
        raise ConfigError(f'{path}: no node sections; {form}')
    sections: dict[str, dict[str, Any]] = {}
    for key, section in data.items():
        if not isinstance(section, dict) or set(section) != {'ros__parameters'} \
                or not isinstance(section['ros__parameters'], dict):
            raise ConfigError(f'{path}: section {key!r} is not a ros__parameters mapping; {form}')
        sections[str(key)] = dict(section['ros__parameters'])
    return sections


def checked_values(params: Sequence[Param], given: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``given`` checked against the table: a key the table does not declare, or a value of another
    type than its default (rclpy refuses those too, e.g. ``1`` for a float), is a ConfigError naming
    it, prefixed by ``where`` (the file and node)."""
    declared = {p.name: p.default for p in params}
    for key, value in given.items():
        if key not in declared:
            raise ConfigError(f'{where} has no parameter {key!r} (declared: {", ".join(sorted(declared))})')
        if type(value) is not type(declared[key]):
            raise ConfigError(f'{where}.{key} = {value!r}; expected a {type(declared[key]).__name__}')
    return dict(given)


def configured_values(params: Sequence[Param], path: str | Path, node_name: str) -> dict[str, Any]:
    """{name: value} as the node would run with ``path`` as its parameter file: the table's
    defaults, overlaid by the file's values (a missing file leaves the defaults). A key the table
    does not declare, or a value of another type than its default, is a ConfigError naming it
    (:func:`checked_values`)."""
    values = {p.name: p.default for p in params}
    path = Path(path)
    if not path.is_file():
        return values
    try:
        given = yaml_parameters(path, node_name)
    except (KeyError, yaml.YAMLError) as exc:
        raise ConfigError(f'{path}: {exc}') from None
    return values | checked_values(params, given, f'{path}: {node_name}')
