"""Evaluating on frames as the pose node receives them: N x N 8-bit (mono8) frames of the model's
fan with square pixels (as a scanner or the simulator node gives them), which the estimator maps
onto the model's input with the pose node's fan settings (``config/pose.yaml``: the fan is
detected), instead of slices cut at the model's own input size.

Shared by ``echoposed eval calibration``, ``eval guidance`` and ``eval threshold``
(``--frame-size N``; 0 keeps the model's own input).
"""
from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import EchoposedError

__all__ = ['check_frame_size', 'estimate_frames', 'frame_estimator', 'frame_predictor', 'frame_sector',
           'predict_frames', 'to_mono8']


def check_frame_size(frame_size: int, error: type[Exception] = EchoposedError) -> int:
    """0 (the model's own input) or at least 16 pixels; raises ``error`` (an EchoposedError by
    default, each caller's own error type otherwise) naming the value."""
    if frame_size < 0 or 0 < frame_size < 16:
        raise error(f"frame_size = {frame_size}; expected 0 (the model's input size) or at least 16 pixels")
    return int(frame_size)


def frame_sector(model_sector: Any, frame_size: int) -> Any:
    """The slicing sector for an evaluation: the model's own (``frame_size`` 0), else its fan on
    ``frame_size`` x ``frame_size`` square pixels (``echoposed_sim.sector.SectorGeometry``)."""
    if not check_frame_size(frame_size):
        return model_sector
    return dataclasses.replace(model_sector, height=frame_size, width=frame_size, square_pixels=True)


def frame_estimator(model: str | os.PathLike[str], frame_size: int, threads: int, mirror: bool) -> Any:
    """The :class:`~echoposed_ros.estimator.Estimator` for an evaluation: fan ``'model'`` for
    slices at the model's input (``frame_size`` 0), else the pose node's fan settings."""
    from echoposed_ros.estimator import Estimator

    if check_frame_size(frame_size):
        from echoposed_ros.config.pose import pose_config_from_yaml
        kwargs = {**pose_config_from_yaml().estimator_kwargs(), 'intra_op_threads': threads, 'mirror': mirror}
    else:
        kwargs = {'intra_op_threads': threads, 'fan': 'model', 'mirror': mirror}
    return Estimator(model, **kwargs)


def to_mono8(images: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] -> uint8, rounded (as the simulator publishes them)."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def estimate_frames(est: Any, images: np.ndarray) -> list[Any]:
    """Float frames ``(N, h, w)`` in [0, 1] -> one ``Estimate`` per frame, after 8-bit
    quantisation and the estimator's own fan mapping (the pose node's path for mono8 frames)."""
    frames = to_mono8(images)
    return est.estimate_batch(list(frames), encodings=['mono8'] * len(frames))


def predict_frames(est: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float frames ``(N, h, w)`` in [0, 1] -> the estimator's (orbit (N, 3, 3), probe (N, 3, 3),
    sigma2 (N,)) through :func:`estimate_frames`: the same contract as ``Estimator.predict``, on
    the pose node's path."""
    out = estimate_frames(est, images)
    if not out:
        return np.zeros((0, 3, 3)), np.zeros((0, 3, 3)), np.zeros(0)
    return (np.stack([e.orbit for e in out]), np.stack([e.probe for e in out]),
            np.array([e.sigma2 for e in out]))


def frame_predictor(est: Any, frame_size: int) -> tuple[Any, Callable[[np.ndarray], Any]]:
    """(slicing sector, predict) of an evaluation with ``est`` (from :func:`frame_estimator`):
    the model's own sector and ``est.predict``, or ``frame_size`` square-pixel frames and
    :func:`predict_frames`."""
    from .sector import model_sector

    sector = frame_sector(model_sector(est.model.info), frame_size)
    return sector, (functools.partial(predict_frames, est) if frame_size else est.predict)
