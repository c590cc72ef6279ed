"""Load an echoposed ONNX ensemble and check it against the model contract.

The contract (written by ``echoposed export``, read here; see docs/estimator.md):

- one ONNX file holding all K members and their orchestrator adapters;
- input ``image``: float32 ``[N, 1, H, W]``, N dynamic, intensities in [0, 1], pixels outside
  the sector 0;
- outputs ``orbit`` and ``probe``: float32 ``[N, K, 3, 3]``, each member's raw 3x3 matrix with
  its adapter applied on the left (the runtime projects them to SO(3));
- ``metadata_props`` (string -> JSON string): ``echoposed_format`` = "1", ``input_height``,
  ``input_width`` (pixels), ``sector_angle_rad`` (rad), ``sector_depth_mm`` (mm),
  ``intensity``, ``members`` (K, or a list of K member records), ``train_config``,
  ``train_data``, ``model_name``.

Every way a file can fail the contract raises one :class:`EstimatorError` naming the file and
the mismatch. Only onnxruntime is used (no onnx, no torch).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EstimatorError

__all__ = [
    'DEFAULT_MODEL_FILE',
    'FORMAT_VERSION',
    'METADATA_KEYS',
    'EnsembleModel',
    'ModelInfo',
    'default_model_path',
    'load_model',
    'require_default_model',
]

#: Value of the ``echoposed_format`` metadata key this runtime reads.
FORMAT_VERSION = '1'

#: Metadata keys every model must carry (values are JSON strings).
METADATA_KEYS = ('echoposed_format', 'input_height', 'input_width', 'sector_angle_rad',
                 'sector_depth_mm', 'intensity', 'members', 'train_config', 'train_data',
                 'model_name')

#: File name of the shipped ensemble in ``models/``.
DEFAULT_MODEL_FILE = 'echoposed_k5.onnx'

INPUT_NAME = 'image'
OUTPUT_NAMES = ('orbit', 'probe')


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about itself (parsed metadata).

    input_height, input_width: pixels of the model's input image (rows along probe z, row 0
    at the probe; columns along probe x). sector_angle_rad: full fan angle (rad).
    sector_depth_mm: fan depth (mm). members: K. The other fields are the parsed JSON values,
    kept for provenance; ``metadata`` holds every parsed key.
    """

    path: Path
    input_height: int
    input_width: int
    sector_angle_rad: float
    sector_depth_mm: float
    members: int
    intensity: Any
    train_config: Any
    train_data: Any
    model_name: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _fail(path: Path, what: str) -> EstimatorError:
    return EstimatorError(f'model file {path}: {what}')


def _parse_metadata(path: Path, raw: dict[str, str]) -> dict[str, Any]:
    missing = [k for k in METADATA_KEYS if k not in raw]
    if missing:
        raise _fail(path, f'metadata key(s) {", ".join(missing)} missing; an echoposed model '
                          f'carries {", ".join(METADATA_KEYS)} (is this an `echoposed export` file?)')
    parsed: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            parsed[key] = json.loads(value)
        except (TypeError, ValueError):
            if key in METADATA_KEYS:
                raise _fail(path, f'metadata {key!r} = {value!r} is not valid JSON') from None
            parsed[key] = value  # foreign keys (e.g. from other tools) are kept verbatim
    return parsed


def _positive_int(path: Path, meta: dict[str, Any], key: str) -> int:
    v = meta[key]
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise _fail(path, f'metadata {key!r} = {v!r}; expected a positive integer')
    return int(v)


def _positive_float(path: Path, meta: dict[str, Any], key: str, upper: float = math.inf) -> float:
    v = meta[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < upper):
        bound = f' below {upper:g}' if math.isfinite(upper) else ''
        raise _fail(path, f'metadata {key!r} = {v!r}; expected a positive finite number{bound}')
    return float(v)


def _info_from_metadata(path: Path, meta: dict[str, Any]) -> ModelInfo:
    fmt = meta['echoposed_format']
    if str(fmt) != FORMAT_VERSION:
        raise _fail(path, f'metadata echoposed_format = {fmt!r}; this runtime reads format '
                          f'{FORMAT_VERSION!r}')
    members = meta['members']
    if isinstance(members, list):
        k = len(members)
    elif isinstance(members, int) and not isinstance(members, bool):
        k = members
    else:
        raise _fail(path, f'metadata members = {members!r}; expected K (an integer) or a list of K '
                          'member records')
    if k < 1:
        raise _fail(path, f'metadata members = {members!r}; expected at least one member')
    name = meta['model_name']
    if not isinstance(name, str) or not name:
        raise _fail(path, f'metadata model_name = {name!r}; expected a non-empty string')
    return ModelInfo(
        path=path,
        input_height=_positive_int(path, meta, 'input_height'),
        input_width=_positive_int(path, meta, 'input_width'),
        sector_angle_rad=_positive_float(path, meta, 'sector_angle_rad', upper=math.pi),
        sector_depth_mm=_positive_float(path, meta, 'sector_depth_mm'),
        members=k,
        intensity=meta['intensity'],
        train_config=meta['train_config'],
        train_data=meta['train_data'],
        model_name=name,
        metadata=meta,
    )


def _check_dim(path: Path, where: str, axis: str, got: Any, expected: int | None) -> None:
    """A static dim must equal ``expected``; a symbolic/None dim is accepted (checked at run time)."""
    if isinstance(got, int) and expected is not None and got != expected:
        raise _fail(path, f'{where} {axis} is {got}, expected {expected}')


def _check_graph(path: Path, session: Any, info: ModelInfo) -> None:
    inputs = session.get_inputs()
    names = [i.name for i in inputs]
    if names != [INPUT_NAME]:
        raise _fail(path, f'graph inputs are {names}, expected exactly [{INPUT_NAME!r}]')
    inp = inputs[0]
    if inp.type != 'tensor(float)':
        raise _fail(path, f'input {INPUT_NAME!r} has type {inp.type}, expected tensor(float) (float32)')
    shape = list(inp.shape)
    if len(shape) != 4:
        raise _fail(path, f'input {INPUT_NAME!r} has shape {shape}, expected [N, 1, H, W]')
    where = f'input {INPUT_NAME!r} shape {shape}:'
    _check_dim(path, where, 'channels', shape[1], 1)
    _check_dim(path, where, 'height', shape[2], info.input_height)
    _check_dim(path, where, 'width', shape[3], info.input_width)
    outputs = {o.name: o for o in session.get_outputs()}
    missing = [n for n in OUTPUT_NAMES if n not in outputs]
    if missing:
        raise _fail(path, f'graph outputs are {sorted(outputs)}, expected {list(OUTPUT_NAMES)} '
                          f'({", ".join(missing)} missing)')
    for name in OUTPUT_NAMES:
        out = outputs[name]
        if out.type != 'tensor(float)':
            raise _fail(path, f'output {name!r} has type {out.type}, expected tensor(float) (float32)')
        oshape = list(out.shape)
        if len(oshape) != 4:
            raise _fail(path, f'output {name!r} has shape {oshape}, expected [N, K, 3, 3]')
        where = f'output {name!r} shape {oshape}:'
        _check_dim(path, where, 'K (members)', oshape[1], info.members)
        _check_dim(path, where, 'matrix rows', oshape[2], 3)
        _check_dim(path, where, 'matrix columns', oshape[3], 3)


class EnsembleModel:
    """An onnxruntime session on a checked echoposed model file (CPU).

    intra_op_threads: threads inside one operator (0 = onnxruntime's default); allow_spinning:
    let idle worker threads busy-wait between operators. Off by default: on this 2-core machine
    shared with the simulator, training and other nodes, spinning made the median latency 2-4x
    worse (benchmarks/bench_estimator.py, ``median_ms_by_session_config``).

    ``run(images)`` takes float32 ``(N, 1, H, W)`` (or ``(N, H, W)``) in the model's geometry
    and returns the raw aligned member matrices ``(orbit, probe)``, each float64
    ``(N, K, 3, 3)`` (not yet projected to SO(3)).
    """

    def __init__(self, path: str | os.PathLike[str], intra_op_threads: int = 2,
                 inter_op_threads: int = 1, allow_spinning: bool = False) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        p = self.path
        if not p.exists():
            raise _fail(p, 'no such file')
        if not p.is_file():
            raise _fail(p, 'is not a file')
        if intra_op_threads < 0:
            raise EstimatorError(f'intra_op_threads = {intra_op_threads}; expected >= 0 (0 = onnxruntime default)')
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(intra_op_threads)
        opts.inter_op_num_threads = int(inter_op_threads)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # spinning worker threads cut latency on an idle machine but burn CPU others need
        opts.add_session_config_entry('session.intra_op.allow_spinning', '1' if allow_spinning else '0')
        try:
            self.session = ort.InferenceSession(str(p), sess_options=opts,
                                                providers=['CPUExecutionProvider'])
        except Exception as exc:  # onnxruntime raises its own (non-ValueError) types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise _fail(p, f'not a loadable ONNX model ({first})') from None
        raw = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info = _info_from_metadata(p, _parse_metadata(p, raw))
        _check_graph(p, self.session, self.info)

    @property
    def input_shape(self) -> tuple[int, int]:
        """(H, W) pixels of the model's input image."""
        return self.info.input_height, self.info.input_width

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw aligned member matrices ``(orbit, probe)``, float64 ``(N, K, 3, 3)`` each."""
        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 3:
            x = x[:, None]
        h, w = self.input_shape
        if x.ndim != 4 or x.shape[1:] != (1, h, w):
            raise EstimatorError(f'model {self.path}: input batch has shape {x.shape}, expected '
                                 f'(N, 1, {h}, {w})')
        try:
            orbit, probe = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(x)})
        except Exception as exc:  # onnxruntime's own error types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise _fail(self.path, f'inference failed on a batch of shape {x.shape} ({first})') from None
        n, k = x.shape[0], self.info.members
        for name, out in zip(OUTPUT_NAMES, (orbit, probe)):
            if out.shape != (n, k, 3, 3):
                raise _fail(self.path, f'output {name!r} came out with shape {out.shape}, expected '
                                       f'({n}, {k}, 3, 3) (N, K members, 3, 3)')
            if not np.isfinite(out).all():
                raise _fail(self.path, f'output {name!r} holds NaN or inf for this input')
        return orbit.astype(np.float64), probe.astype(np.float64)


def load_model(path: str | os.PathLike[str], intra_op_threads: int = 2, allow_spinning: bool = False) -> EnsembleModel:
    """Open and check an echoposed ONNX model (see module docstring); raises EstimatorError."""
    return EnsembleModel(path, intra_op_threads=intra_op_threads, allow_spinning=allow_spinning)


def default_model_path() -> Path:
    """The shipped model, ``models/echoposed_k5.onnx`` of the checkout or ``share/echoposed``."""
    from ..paths import models_dir
    return models_dir() / DEFAULT_MODEL_FILE


def require_default_model() -> Path:
    """:func:`default_model_path`, or an EstimatorError saying the shipped model is not there."""
    path = default_model_path()
    if not path.is_file():
        raise EstimatorError(f'model file {path}: no such file; the shipped model {DEFAULT_MODEL_FILE} '
                             'has not been trained and installed into models/ yet (see models/ and '
                             '`echoposed train` / `echoposed export`); pass --model PATH to use another model')
    return path
