"""The runtime estimator: image -> canonical mean pose, sigma^2 and aligned members (docs/method.md section 5).

Pipeline per image: encoding -> float [0, 1] (:func:`image_to_float`), fan of the input
(given, the model's own when the image has the model's size, or detected) -> resampled onto
the model's fan (:func:`map_to_model`), one onnxruntime call for all K members, SVD projection
of each member's aligned matrices to SO(3), projected mean per factor and
``sigma^2 = mean_k [angle(M_v^T A_kv)^2 + angle(M_p^T A_kp)^2]`` (rad^2), mean put in
canonical gauge (``echoposed_ros.geometry.mean_and_sigma2``). Pose factors are (3, 3)
rotation matrices in the model's common frame; quaternions are (x, y, z, w).
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..geometry import matrix_to_quat_xyzw, mean_and_sigma2, project_to_so3
from .errors import EstimatorError
from .fan import FanGeometry, detect_fan, model_fan
from .image import check_not_blank, image_to_float, infer_encoding, map_to_model
from .model import EnsembleModel

__all__ = ['Estimate', 'Estimator', 'FanMode']

#: Right-multiplying by Rz(pi) = diag(-1, -1, 1) negates a rotation's first two columns.
_RZ_PI_COLUMNS = np.array([-1.0, -1.0, 1.0])

#: How the estimator finds an input's fan: ``'auto'`` (the model's fan when the image has the
#: model's size, else detect once per image size and reuse), ``'detect'`` (detect on every
#: image), ``'model'`` (always assume the model's fan; the image must have the model's size).
FanMode = Literal['auto', 'detect', 'model']


@dataclass(frozen=True)
class Estimate:
    """One image's estimate.

    orbit, probe: (3, 3) float64 ensemble mean pose (R_v, R_p), canonical gauge.
    sigma2: ensemble disagreement (rad^2). member_orbits, member_probes: (K, 3, 3) the aligned
    members' rotations (adapters applied, projected to SO(3); not gauge-fixed).
    inference_s: seconds in the onnxruntime call (for a batch: the call's time / N).
    total_s: seconds from the raw image to this estimate (per image for a batch).
    fan: the input fan used (pixel coordinates of the input image).
    """

    orbit: np.ndarray
    probe: np.ndarray
    sigma2: float
    member_orbits: np.ndarray
    member_probes: np.ndarray
    inference_s: float
    total_s: float
    fan: FanGeometry

    @property
    def orbit_xyzw(self) -> np.ndarray:
        """(4,) orbit quaternion (x, y, z, w), w >= 0."""
        return matrix_to_quat_xyzw(self.orbit)

    @property
    def probe_xyzw(self) -> np.ndarray:
        """(4,) probe quaternion (x, y, z, w), w >= 0."""
        return matrix_to_quat_xyzw(self.probe)


class Estimator:
    """Pose estimator on an echoposed ONNX ensemble (onnxruntime, CPU; no torch).

    model_path: the ONNX file (checked on load; :class:`EstimatorError` on any mismatch).
    intra_op_threads: onnxruntime threads inside one operator (default 2).
    fan: ``'auto'`` | ``'detect'`` | ``'model'`` (see :data:`FanMode`) or a fixed
    :class:`FanGeometry` of the input images. input_depth_mm: when given (mm), inputs keep
    their physical scale on the model's fan instead of having their depth scaled to it.
    detect_threshold: intensity (in [0, 1]) above which a pixel counts as in the fan.
    allow_spinning: onnxruntime worker threads busy-wait while idle (default off; see
    :class:`EnsembleModel`). mirror: test-time mirroring: each image also runs left-right
    flipped, and the flipped members, turned back by ``Rz(pi)`` on the probe factor (mirroring
    is a pose, docs/method.md section 2), join the ensemble: 2K members, twice the inference cost. An
    image the model confuses with its mirror then shows as a large sigma^2.
    """

    def __init__(self, model_path: str | os.PathLike[str], *, intra_op_threads: int = 2,
                 fan: FanMode | FanGeometry = 'auto', input_depth_mm: float | None = None,
                 detect_threshold: float = 0.0, allow_spinning: bool = False, mirror: bool = False) -> None:
        if not isinstance(fan, FanGeometry) and fan not in ('auto', 'detect', 'model'):
            raise EstimatorError(f'fan = {fan!r}; expected "auto", "detect", "model" or a FanGeometry')
        self.model = EnsembleModel(model_path, intra_op_threads=intra_op_threads, allow_spinning=allow_spinning)
        info = self.model.info
        square = bool(info.metadata.get('square_pixels', False))
        self.model_fan = model_fan(info.input_height, info.input_width, info.sector_angle_rad, square)
        self.fan = fan
        self.input_depth_mm = input_depth_mm
        self.detect_threshold = float(detect_threshold)
        self._detected: dict[tuple[int, int], FanGeometry] = {}
        self.mirror = bool(mirror)

    @property
    def path(self) -> Path:
        """The model file."""
        return self.model.path

    @property
    def input_shape(self) -> tuple[int, int]:
        """(H, W) of the model's input."""
        return self.model.input_shape

    @property
    def members(self) -> int:
        """Members per estimate: the model's K, or 2K with test-time mirroring."""
        return self.model.info.members * (2 if self.mirror else 1)

    # -- preprocessing ---------------------------------------------------------------------------

    def input_fan(self, grey: np.ndarray, name: str = 'image') -> FanGeometry:
        """The fan of a float image ``(H, W)`` according to this estimator's ``fan`` setting."""
        if isinstance(self.fan, FanGeometry):
            return self.fan
        shape = tuple(grey.shape)
        if self.fan == 'model' or (self.fan == 'auto' and shape == self.input_shape):
            if shape != self.input_shape:
                raise EstimatorError(f'{name}: size {shape[0]} x {shape[1]} differs from the model input '
                                     f'{self.input_shape[0]} x {self.input_shape[1]} but fan = "model"; '
                                     'use fan="auto" or "detect" or give the input fan')
            return self.model_fan
        if self.fan == 'auto' and shape in self._detected:
            return self._detected[shape]
        found = detect_fan(grey, threshold=self.detect_threshold, name=name)
        if self.fan == 'auto':
            self._detected[shape] = found
        return found

    def prepare(self, image: np.ndarray, encoding: str | None = None,
                name: str = 'image') -> tuple[np.ndarray, FanGeometry]:
        """Raw image -> (model input float32 ``(H, W)``, the input fan used).

        A blank frame (every pixel equal, or none above ``detect_threshold``) is an EstimatorError
        whatever fan is known for its size: a fan cached from an earlier frame does not make it valid.
        """
        enc = infer_encoding(image) if encoding is None else encoding
        grey = image_to_float(image, enc, name=name)
        check_not_blank(grey, self.detect_threshold, name)
        src = self.input_fan(grey, name)
        depth_mm = self.model.info.sector_depth_mm if self.input_depth_mm is not None else None
        x = map_to_model(grey, src, self.model_fan, self.input_shape,
                         src_depth_mm=self.input_depth_mm, dst_depth_mm=depth_mm)
        return x, src

    # -- inference -------------------------------------------------------------------------------

    def predict(self, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model-geometry float images ``(N, H, W)`` -> (orbit (N, 3, 3), probe (N, 3, 3), sigma2 (N,)).

        No resampling: the images must already be the model's input (e.g. simulator slices of
        the model's sector). Means are in canonical gauge; sigma2 in rad^2.
        """
        A_v, A_p = self._members_in_batches(images, batch_size)
        if A_v.shape[0] == 0:
            return np.zeros((0, 3, 3)), np.zeros((0, 3, 3)), np.zeros(0)
        mean = mean_and_sigma2(A_v, A_p)
        return mean.orbit, mean.probe, mean.sigma2

    def predict_members(self, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model-geometry float images ``(N, H, W)`` -> aligned members (orbit (N, K, 3, 3), probe (N, K, 3, 3),
        not gauge-fixed) and sigma2 (N,) rad^2; as :meth:`predict`, without the means."""
        A_v, A_p = self._members_in_batches(images, batch_size)
        if A_v.shape[0] == 0:
            return A_v, A_p, np.zeros(0)
        return A_v, A_p, mean_and_sigma2(A_v, A_p).sigma2

    def _members_in_batches(self, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs (N, H, W), run ``batch_size`` at a time -> aligned members, each (N, K, 3, 3)."""
        x = np.asarray(images, dtype=np.float32)
        k = self.members
        if x.shape[0] == 0:
            return np.zeros((0, k, 3, 3)), np.zeros((0, k, 3, 3))
        parts = [self._members(x[i:i + batch_size])[:2] for i in range(0, x.shape[0], batch_size)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _members(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Model inputs (N, H, W) -> aligned members projected to SO(3), each (N, K, 3, 3), and the call's seconds."""
        t0 = time.perf_counter()
        n = batch.shape[0]
        if self.mirror:
            batch = np.concatenate([batch, batch[:, :, ::-1]])
        raw_v, raw_p = self.model.run(np.ascontiguousarray(batch))
        dt = time.perf_counter() - t0
        A_v, A_p = project_to_so3(raw_v, 'orbit output'), project_to_so3(raw_p, 'probe output')
        if self.mirror:
            # the flip of a slice at (R_v, R_p) is the slice at (R_v, R_p Rz(pi)); Rz(pi) = diag(-1, -1, 1)
            turned = A_p[n:] * _RZ_PI_COLUMNS
            A_v = np.concatenate([A_v[:n], A_v[n:]], axis=1)
            A_p = np.concatenate([A_p[:n], turned], axis=1)
        return A_v, A_p, dt

    def estimate(self, image: np.ndarray, encoding: str | None = None, name: str = 'image') -> Estimate:
        """One image (any supported encoding and size) -> :class:`Estimate`."""
        return self.estimate_batch([image], encodings=None if encoding is None else [encoding],
                                   names=[name])[0]

    def estimate_batch(self, images: Sequence[np.ndarray], encodings: Sequence[str] | None = None,
                       names: Sequence[str] | None = None) -> list[Estimate]:
        """Several images (each any encoding and size) in one session call -> list of :class:`Estimate`."""
        t0 = time.perf_counter()
        n = len(images)
        if n == 0:
            return []
        encs = [None] * n if encodings is None else list(encodings)
        labels = [f'image {i}' for i in range(n)] if names is None else list(names)
        prepared = [self.prepare(img, enc, name) for img, enc, name in zip(images, encs, labels)]
        batch = np.stack([p[0] for p in prepared])
        A_v, A_p, dt = self._members(batch)
        mean = mean_and_sigma2(A_v, A_p)
        total = (time.perf_counter() - t0) / n
        return [Estimate(orbit=mean.orbit[i], probe=mean.probe[i], sigma2=float(mean.sigma2[i]),
                         member_orbits=A_v[i], member_probes=A_p[i], inference_s=dt / n, total_s=total,
                         fan=prepared[i][1]) for i in range(n)]
