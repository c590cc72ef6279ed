"""The slicing sector of a model: its own fan and input size (metadata), so slices go to the
network unchanged."""
from __future__ import annotations

from typing import Any

from echoposed_sim.sector import SectorGeometry

__all__ = ['model_sector']


def model_sector(info: Any) -> SectorGeometry:
    """``echoposed_ros.estimator.model.ModelInfo`` -> the model's SectorGeometry (rad, mm, pixels)."""
    return SectorGeometry(angle_rad=info.sector_angle_rad, depth_mm=info.sector_depth_mm,
                          height=info.input_height, width=info.input_width,
                          square_pixels=bool(info.metadata.get('square_pixels', False)))
