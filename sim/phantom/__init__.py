"""Procedural beating-heart 3D+t echo phantoms (docs/phantom.md).

- ``make_phantom(seed, style)`` -> Volume; ``build_patient`` also gives labels and the models
- ``AcquisitionStyle`` / ``load_style``: scanner rendering parameters from YAML; ``random_style(seed)``: one
  drawn per patient over wide ranges
- ``PhantomCache``: on-disk cache of generated patients with a bounded in-memory LRU
"""
from __future__ import annotations

from .anatomy import WIDE_MOTION_RANGES, Anatomy, HeartShape, Tissue, sample_heart_shape, wide_motion
from .cache import PhantomCache
from .errors import PhantomError
from .generate import DEFAULT_EXTENT_MM, GENERATOR_VERSION, PhantomParts, build_patient, make_phantom
from .motion import CardiacTiming, MotionModel, backward_points, forward_points
from .style import (
    RANDOM_STYLE_RANGES,
    AcquisitionStyle,
    default_style,
    load_style,
    random_style,
    save_style,
    style_path,
)
from .views import standard_views

__all__ = [
    'DEFAULT_EXTENT_MM',
    'GENERATOR_VERSION',
    'RANDOM_STYLE_RANGES',
    'WIDE_MOTION_RANGES',
    'AcquisitionStyle',
    'Anatomy',
    'CardiacTiming',
    'HeartShape',
    'MotionModel',
    'PhantomCache',
    'PhantomError',
    'PhantomParts',
    'Tissue',
    'backward_points',
    'build_patient',
    'default_style',
    'forward_points',
    'load_style',
    'make_phantom',
    'random_style',
    'sample_heart_shape',
    'save_style',
    'standard_views',
    'style_path',
    'wide_motion',
]
