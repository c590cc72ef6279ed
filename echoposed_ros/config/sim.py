"""The simulation node's parameter table and its checked, frozen config (no rclpy here)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from echoposed_sim.sector import SectorGeometry

from ..paths import cache_dir
from .errors import ConfigError
from .params import Param

__all__ = ['PARAMS', 'SimNodeConfig']

_BUILT = ' (read-only: the volume, the world and the sector are built once at start-up)'

PARAMS = (
    Param('volume', '', 'volume file (.nii, .nii.gz, .mha, .mhd, .npz, .npy); empty = phantom patient' + _BUILT,
          read_only=True),
    Param('phantom_seed', 1000, 'phantom patient seed (used when volume is empty)' + _BUILT, read_only=True),
    Param('style', '', 'acquisition style YAML of the phantom; empty = the default style' + _BUILT, read_only=True),
    Param('phantom_frames', 20, 'phantom time frames per cardiac cycle' + _BUILT, read_only=True),
    Param('cache_dir', '', 'folder caching generated phantom patients; empty = the default '
          '($ECHOPOSED_CACHE, else cache/ in a source checkout, else ~/.cache/echoposed)' + _BUILT, read_only=True),
    Param('image_height', 128, 'image rows (pixels), along depth' + _BUILT, read_only=True),
    Param('image_width', 128, 'image columns (pixels), lateral' + _BUILT, read_only=True),
    Param('sector_angle', float(np.deg2rad(75.0)), 'rad, full opening angle of the sector' + _BUILT, read_only=True),
    Param('sector_depth', 0.15, 'm, depth of the sector' + _BUILT, read_only=True),
    Param('square_pixels', True, 'frames with square pixels, as a scanner gives them (the fan fills the width, '
          "rows below it stay black); false = the fan stretched over the whole image, as the model's input"
          + _BUILT, read_only=True),
    Param('orbit_radius', 0.0, "m, orbit radius about the heart centre; 0 = the volume's own" + _BUILT,
          read_only=True),
    Param('frame_rate', 30.0, 'Hz, image rate and world step (read-only: the frame timer is built with it at '
          'start-up)', read_only=True),
    Param('cardiac_motion', True, 'the heart beats (true) or stays at end-diastole (false); may change while '
          'running'),
    Param('robot', True, 'true: a PyBullet KUKA iiwa holds the probe; false: kinematic probe' + _BUILT,
          read_only=True),
    Param('start_seed', 0, 'seed of the random start poses (sim/reset draws the next one; read-only: the '
          'generator is seeded once at start-up)', read_only=True),
    Param('start_orbit_max', float(np.deg2rad(20.0)), 'rad, largest orbit angle of a random start pose; may '
          'change while running (used by the next sim/reset)'),
    Param('start_tilt_max', float(np.deg2rad(20.0)), 'rad, largest probe tilt about x and y of a start pose; '
          'may change while running (used by the next sim/reset)'),
    Param('command_timeout', 0.2, 's, hold still when no command has come for this long; may change while '
          'running'),
    Param('command_source', 'body', "which command drives the probe: 'body' (ProbeTwist on probe/cmd, "
          "integrated exactly on SO(3) x SO(3)) or 'cartesian' (TwistStamped on probe/cmd_twist, as a robot "
          "servo takes it; read-only: the node subscribes to one of them at start-up)", read_only=True),
)


@dataclass(frozen=True)
class SimNodeConfig:
    """The simulation node's parameters, checked: the sector as a :class:`SectorGeometry` (mm),
    ``orbit_radius_mm`` (None = the volume's own), angles in radians, ``frame_rate`` in Hz,
    ``command_timeout`` in s."""

    volume: str
    phantom_seed: int
    style: str
    phantom_frames: int
    cache_dir: Path
    sector: SectorGeometry
    orbit_radius_mm: float | None
    frame_rate: float
    cardiac_motion: bool
    robot: bool
    start_seed: int
    start_orbit_max: float
    start_tilt_max: float
    command_timeout: float
    command_source: str

    @classmethod
    def from_parameters(cls, v: dict[str, Any]) -> SimNodeConfig:
        if not v['frame_rate'] > 0:
            raise ConfigError(f"frame_rate = {v['frame_rate']} Hz; expected > 0")
        if not v['command_timeout'] > 0:
            raise ConfigError(f"command_timeout = {v['command_timeout']} s; expected > 0")
        if v['command_source'] not in ('body', 'cartesian'):
            raise ConfigError(f"command_source = {v['command_source']!r}; expected 'body' or 'cartesian'")
        if v['orbit_radius'] < 0:
            raise ConfigError(f"orbit_radius = {v['orbit_radius']} m; expected >= 0 (0 = the volume's own)")
        for name in ('start_orbit_max', 'start_tilt_max'):
            if not 0 <= v[name] <= np.pi:
                raise ConfigError(f'{name} = {v[name]} rad; expected an angle in [0, pi]')
        sector = SectorGeometry(angle_rad=float(v['sector_angle']), depth_mm=1e3 * float(v['sector_depth']),
                                height=int(v['image_height']), width=int(v['image_width']),
                                square_pixels=bool(v['square_pixels']))
        return cls(volume=v['volume'], phantom_seed=int(v['phantom_seed']), style=v['style'],
                   phantom_frames=int(v['phantom_frames']),
                   cache_dir=Path(v['cache_dir']) if v['cache_dir'] else cache_dir() / 'phantoms', sector=sector,
                   orbit_radius_mm=1e3 * v['orbit_radius'] or None, frame_rate=float(v['frame_rate']),
                   cardiac_motion=bool(v['cardiac_motion']), robot=bool(v['robot']),
                   start_seed=int(v['start_seed']), start_orbit_max=float(v['start_orbit_max']),
                   start_tilt_max=float(v['start_tilt_max']), command_timeout=float(v['command_timeout']),
                   command_source=v['command_source'])
