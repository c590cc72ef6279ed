"""Tiny ONNX models that follow the echoposed model contract, for tests and demos.

Built with ``onnx.helper`` (needs the ``onnx`` package, not torch; imported only when a
function here is called). The model is analytic: for an input batch ``x`` ``[N, 1, H, W]``
with per-image mean intensity ``m_n``,

    orbit[n, k] = orbit_members[k] @ Rz(gain * m_n)
    probe[n, k] = probe_members[k] @ Rz(gain * m_n)

so with ``gain = 0`` every image gets the fixed member matrices (known ensemble mean and
sigma^2), and with ``gain != 0`` the output depends on the image in a checkable way.
Matrices need not be rotations (the runtime projects them).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EstimatorError

__all__ = ['default_metadata', 'write_model']


def default_metadata(members: int, height: int = 64, width: int = 64,
                     sector_angle_rad: float = math.radians(75.0),
                     sector_depth_mm: float = 140.0) -> dict[str, str]:
    """Complete, valid metadata_props (values JSON-encoded) for a synthetic model."""
    values: dict[str, Any] = {
        'echoposed_format': '1',
        'input_height': height,
        'input_width': width,
        'sector_angle_rad': sector_angle_rad,
        'sector_depth_mm': sector_depth_mm,
        'intensity': {'range': [0.0, 1.0], 'outside_sector': 0.0},
        'members': members,
        'train_config': {'synthetic': True},
        'train_data': {'synthetic': True},
        'model_name': 'synthetic',
    }
    return {k: json.dumps(v) for k, v in values.items()}


def write_model(path: str | os.PathLike[str], orbit_members: np.ndarray, probe_members: np.ndarray,
                *, height: int = 64, width: int = 64, gain: float = 0.0,
                metadata: dict[str, str] | None = None, input_name: str = 'image',
                output_names: tuple[str, str] = ('orbit', 'probe'), channels: int = 1,
                declared_hw: tuple[int | str, int | str] | None = None,
                flat_outputs: bool = False, opset: int = 17) -> Path:
    """Write a synthetic model file and return its path.

    orbit_members, probe_members: (K, 3, 3). metadata: metadata_props (default:
    :func:`default_metadata`); pass a modified dict to make a non-conforming file. The other
    keyword arguments exist to build non-conforming graphs for tests: another input or output
    name, ``channels`` != 1, ``declared_hw`` (static dims other than (height, width), or
    strings for symbolic dims), ``flat_outputs`` (outputs ``[N, K, 9]``).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    orbit_members = np.asarray(orbit_members, dtype=np.float32)
    probe_members = np.asarray(probe_members, dtype=np.float32)
    k = orbit_members.shape[0]
    if orbit_members.shape != (k, 3, 3) or probe_members.shape != (k, 3, 3):
        raise EstimatorError(f'orbit_members and probe_members must both be (K, 3, 3), got '
                         f'{orbit_members.shape} and {probe_members.shape}')
    hw = declared_hw if declared_hw is not None else (height, width)
    inits = [
        numpy_helper.from_array(orbit_members, 'orbit_members'),
        numpy_helper.from_array(probe_members, 'probe_members'),
        numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), 'axes'),
        numpy_helper.from_array(np.array(gain, dtype=np.float32), 'gain'),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), 'zero_f'),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), 'one_f'),
        numpy_helper.from_array(np.array([0, 1, 3, 3], dtype=np.int64), 'rz_shape'),
        numpy_helper.from_array(np.array([0, k, 9], dtype=np.int64), 'flat_shape'),
    ]
    nodes = [
        helper.make_node('ReduceMean', ['x', 'axes'], ['m'], keepdims=1) if opset >= 18 else
        helper.make_node('ReduceMean', ['x'], ['m'], axes=[1, 2, 3], keepdims=1),
        helper.make_node('Mul', ['m', 'gain'], ['theta']),
        helper.make_node('Cos', ['theta'], ['c']),
        helper.make_node('Sin', ['theta'], ['s']),
        helper.make_node('Neg', ['s'], ['ns']),
        helper.make_node('Mul', ['theta', 'zero_f'], ['z0']),
        helper.make_node('Add', ['z0', 'one_f'], ['o1']),
        helper.make_node('Concat', ['c', 'ns', 'z0', 's', 'c', 'z0', 'z0', 'z0', 'o1'], ['rz9'], axis=3),
        helper.make_node('Reshape', ['rz9', 'rz_shape'], ['rz']),
        helper.make_node('MatMul', ['orbit_members', 'rz'], ['orbit_m']),
        helper.make_node('MatMul', ['probe_members', 'rz'], ['probe_m']),
    ]
    # rename the graph input without touching the node wiring
    nodes.insert(0, helper.make_node('Identity', [input_name], ['x']))
    if flat_outputs:
        nodes += [helper.make_node('Reshape', ['orbit_m', 'flat_shape'], [output_names[0]]),
                  helper.make_node('Reshape', ['probe_m', 'flat_shape'], [output_names[1]])]
        out_shape: list[Any] = ['N', k, 9]
    else:
        nodes += [helper.make_node('Identity', ['orbit_m'], [output_names[0]]),
                  helper.make_node('Identity', ['probe_m'], [output_names[1]])]
        out_shape = ['N', k, 3, 3]
    graph = helper.make_graph(
        nodes, 'echoposed_synthetic',
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ['N', channels, hw[0], hw[1]])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, out_shape) for n in output_names],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)],
                              producer_name='echoposed.synthetic')
    model.ir_version = 8
    meta = default_metadata(k, height, width) if metadata is None else metadata
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    out = Path(path)
    out.write_bytes(model.SerializeToString())
    return out
