"""Simulated worlds holding the probe: a PyBullet arm (``ArmWorld``) or a kinematic probe (``KinematicWorld``).

Both offer the :class:`ProbeWorld` interface in the volume frame V (mm, canonical-gauge poses):
``set_pose``, ``command_pose``, ``command_body_twist``, ``command_cartesian_twist``, ``step``,
``read_pose``, ``status``, ``joint_names``. See ``docs/world.md``.
"""
from __future__ import annotations

from .base import ProbeWorld, WorldStatus
from .errors import WorldError
from .frames import MM_PER_M, HeartFrame
from .kinematic import KinematicWorld
from .scene import ArmWorld

__all__ = ['MM_PER_M', 'ArmWorld', 'HeartFrame', 'KinematicWorld', 'ProbeWorld', 'WorldError', 'WorldStatus',
           'make_world']


def make_world(volume, robot: bool = True, **kwargs) -> ProbeWorld:
    """An :class:`ArmWorld` (``robot=True``) or :class:`KinematicWorld` about ``volume``, at its base pose."""
    return (ArmWorld if robot else KinematicWorld).from_volume(volume, **kwargs)
