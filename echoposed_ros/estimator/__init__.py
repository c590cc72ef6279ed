"""Runtime pose estimation on an exported echoposed ONNX ensemble (docs/method.md section 5; no torch).

- ``model``: load an ONNX model file and check it against the model contract
- ``fan``: the sector fan in pixel coordinates; detecting it in an image
- ``image``: image encodings -> float [0, 1]; resampling an input fan onto the model's fan
- ``estimator``: :class:`Estimator` (``estimate(image) -> Estimate``)
- ``synthetic``: tiny conforming ONNX models for tests (needs ``onnx``; import it explicitly)

Every bad model file or input image raises :class:`EstimatorError` (a ValueError).
"""
from __future__ import annotations

from .errors import EstimatorError
from .estimator import Estimate, Estimator, FanMode
from .fan import FanGeometry, detect_fan, model_fan
from .image import (
                    ENCODINGS,
                    IMAGE_SUFFIXES,
                    MAX_PIXELS,
                    check_not_blank,
                    check_pixel_count,
                    decode_buffer,
                    image_to_float,
                    infer_encoding,
                    map_to_model,
                    read_image_file,
)
from .model import (
                    DEFAULT_MODEL_FILE,
                    FORMAT_VERSION,
                    METADATA_KEYS,
                    EnsembleModel,
                    ModelInfo,
                    default_model_path,
                    load_model,
                    require_default_model,
)

__all__ = [
                    'DEFAULT_MODEL_FILE',
                    'ENCODINGS',
                    'FORMAT_VERSION',
                    'IMAGE_SUFFIXES',
                    'MAX_PIXELS',
                    'METADATA_KEYS',
                    'EnsembleModel',
                    'Estimate',
                    'Estimator',
                    'EstimatorError',
                    'FanGeometry',
                    'FanMode',
                    'ModelInfo',
                    'check_not_blank',
                    'check_pixel_count',
                    'decode_buffer',
                    'default_model_path',
                    'detect_fan',
                    'image_to_float',
                    'infer_encoding',
                    'load_model',
                    'map_to_model',
                    'model_fan',
                    'read_image_file',
                    'require_default_model',
]
