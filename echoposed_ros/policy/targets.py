"""Guidance targets: a pose in the estimates' frame, from a pose, an estimated image, or a named view.

A target pose only means something in the frame of the estimates it is compared with (the
model's frame, known only up to an unknown left factor). So a named standard view cannot be a
universal constant: it comes from a *view table* written for one model (or for simulator ground
truth, frame ``heart``), a YAML file::

    frame: heart            # frame_id of the EchoPose estimates these poses are in ('' = any)
    views:
      A4C: {orbit: [x, y, z, w], probe: [x, y, z, w]}
      A2C: {orbit: [x, y, z, w], probe: [x, y, z, w]}

Quaternions are ROS order (x, y, z, w). The other sound way to a standard view is an image of
it, estimated by the same model (``SetTarget.KIND_IMAGE``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from pathlib import Path

import numpy as np
import yaml
from numpy.typing import ArrayLike

from echoposed_ros.geometry import (
    GeometryError,
    Pose,
    as_pose,
    effective_error,
    gauge_fix,
    matrix_to_quat_xyzw,
    quat_xyzw_to_matrix,
)

from .controller import ungauged_mean
from .errors import PolicyError
from .readings import Reading, target_readings

__all__ = [
    'STANDARD_VIEWS', 'Target', 'TargetKind', 'ViewTable', 'load_view_table', 'make_target',
    'target_from_quaternions', 'view_name', 'write_view_table',
]

#: Standard apical views a view table may hold (upper case).
STANDARD_VIEWS: tuple[str, ...] = ('A2C', 'A3C', 'A4C')


class TargetKind(IntEnum):
    """Where a target came from; values equal ``SetTarget.KIND_*``."""

    IMAGE = 0
    POSE = 1
    VIEW = 2


@dataclass(frozen=True)
class Target:
    """A guidance target.

    name: shown in ``GuidanceStatus.target`` ("A4C", "image", "pose"); pose: ``(R_v, R_p)``
    (3, 3) rotations, canonical gauge; frame: frame_id of the estimates it is valid for
    ('' = any); kind: its origin; ungauged: the estimate's un-gauge-fixed ensemble mean when the
    target came from an image and its members (see ``controller.ungauged_mean``), else None;
    readings: when groups of the members read the image as views away from their mean, those views
    (:mod:`.readings`, the farthest from ``pose`` first; empty: the one reading ``pose``).
    """

    name: str
    pose: Pose
    kind: TargetKind
    frame: str = ''
    ungauged: Pose | None = None
    readings: tuple[Reading, ...] = ()

    @property
    def candidates(self) -> int:
        """Poses the controller may guide to: the estimate as set (index 0), then each reading."""
        return 1 + len(self.readings)

    def candidate(self, index: int) -> Target:
        """This target guided to candidate ``index``: 0 (or out of range) itself, the mean of all members; ``k >= 1``
        reading ``k - 1`` (its members' pose and un-gauged mean)."""
        if not 1 <= index <= len(self.readings):
            return self
        r = self.readings[index - 1]
        return replace(self, pose=r.pose, ungauged=r.ungauged if self.ungauged is not None else None)

    def quaternions(self) -> tuple[np.ndarray, np.ndarray]:
        """(orbit, probe) as ROS quaternions (4,) (x, y, z, w), w >= 0."""
        return matrix_to_quat_xyzw(self.pose.orbit), matrix_to_quat_xyzw(self.pose.probe)


def view_name(name: str) -> str:
    """Canonical (upper-case) standard view name; raises PolicyError for an unknown name."""
    key = str(name).strip().upper()
    if key not in STANDARD_VIEWS:
        raise PolicyError(f'view {name!r}: unknown standard view; expected one of {", ".join(STANDARD_VIEWS)}')
    return key


def make_target(pose: Sequence[ArrayLike], name: str, kind: TargetKind, frame: str = '',
                ungauged: Pose | None = None) -> Target:
    """A :class:`Target` at ``pose`` (any gauge; stored in canonical gauge). Bad rotations raise PolicyError."""
    try:
        g = gauge_fix(as_pose(pose, f'target {name!r}'))
    except GeometryError as exc:
        raise PolicyError(str(exc)) from None
    if g.orbit.shape != (3, 3):
        raise PolicyError(f'target {name!r}: expected one pose of (3, 3) rotations, got shape {g.orbit.shape}')
    return Target(name=name, pose=g, kind=TargetKind(kind), frame=frame, ungauged=ungauged)


def target_from_quaternions(orbit_xyzw: ArrayLike, probe_xyzw: ArrayLike, name: str, kind: TargetKind,
                            frame: str = '', member_orbits_xyzw: ArrayLike = (),
                            member_probes_xyzw: ArrayLike = (), split: float = 0.0) -> Target:
    """A target from ROS quaternions (x, y, z, w) of the orbit and probe factors (unit norm).

    ``member_*_xyzw`` (K, 4): the estimate's aligned members, if any; kept as the un-gauged mean
    when they agree with the pose (``controller.ungauged_mean``). ``split`` > 0 (rad): the members' groups
    (:mod:`.readings`, at least two members each) whose pose lies farther than ``split`` from ``pose`` (the
    mean of all members) are the target's readings, the farthest first.
    """
    try:
        pose = (quat_xyzw_to_matrix(orbit_xyzw, f'target {name!r} orbit'),
                quat_xyzw_to_matrix(probe_xyzw, f'target {name!r} probe'))
    except GeometryError as exc:
        raise PolicyError(str(exc)) from None
    target = make_target(pose, name, kind, frame, ungauged_mean(member_orbits_xyzw, member_probes_xyzw, pose))
    if split > 0 and len(member_orbits_xyzw) > 0:
        try:
            m_v = quat_xyzw_to_matrix(np.asarray(member_orbits_xyzw, dtype=np.float64).reshape(-1, 4),
                                      f'target {name!r} member orbits')
            m_p = quat_xyzw_to_matrix(np.asarray(member_probes_xyzw, dtype=np.float64).reshape(-1, 4),
                                      f'target {name!r} member probes')
        except GeometryError as exc:
            raise PolicyError(str(exc)) from None
        # a reading within split of the mean of all members is the mean's own view, guided to and searched about
        # already; the others are kept, the farthest from the mean first (the view the mean hid most)
        readings = target_readings(m_v, m_p, split)
        away = [float(effective_error(r.pose, target.pose)) for r in readings]
        order = sorted(range(len(readings)), key=lambda k: (-away[k], k))
        target = replace(target, readings=tuple(readings[k] for k in order if away[k] > split))
    return target


@dataclass(frozen=True)
class ViewTable:
    """Standard view poses for one model: frame ('' = any) and ``{name: Target}``; source: file it came from."""

    frame: str
    views: Mapping[str, Target] = field(default_factory=dict)
    source: str = ''

    def target(self, name: str) -> Target:
        """The target for view ``name`` (case-insensitive); PolicyError naming the file if it has none."""
        key = view_name(name)
        if key not in self.views:
            where = f' in {self.source}' if self.source else ''
            raise PolicyError(f'view {key!r}: no pose for it{where}; the table has '
                              f'{", ".join(sorted(self.views)) or "no views"}')
        return self.views[key]


def load_view_table(path: str | Path) -> ViewTable:
    """Read a view table YAML file (module docstring); errors name the file and the entry."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PolicyError(f'{path}: cannot read the view table ({exc.strerror or exc})') from None
    except yaml.YAMLError as exc:
        raise PolicyError(f'{path}: not valid YAML ({exc})') from None
    if isinstance(data, dict):
        unknown = sorted(set(data) - {'frame', 'views'})
        if unknown:
            raise PolicyError(f'{path}: unknown key(s) {unknown}; expected "frame" and "views"')
    if not isinstance(data, dict) or not isinstance(data.get('views'), dict):
        raise PolicyError(f'{path}: expected a mapping with a "views" mapping (name -> {{orbit, probe}}), '
                          f'got {type(data).__name__}')
    frame = data.get('frame', '') or ''
    if not isinstance(frame, str):
        raise PolicyError(f'{path}: "frame" must be a string (an EchoPose frame_id), got {frame!r}')
    views: dict[str, Target] = {}
    for raw_name, entry in data['views'].items():
        try:
            key = view_name(raw_name)
        except PolicyError as exc:
            raise PolicyError(f'{path}: {exc}') from None
        if not isinstance(entry, dict) or set(entry) != {'orbit', 'probe'}:
            raise PolicyError(f'{path}: view {key}: expected {{orbit: [x, y, z, w], probe: [x, y, z, w]}}, '
                              f'got {entry!r}')
        try:
            views[key] = target_from_quaternions(np.asarray(entry['orbit'], dtype=float),
                                                 np.asarray(entry['probe'], dtype=float), key, TargetKind.VIEW,
                                                 frame)
        except (PolicyError, TypeError, ValueError) as exc:
            raise PolicyError(f'{path}: view {key}: {exc}') from None
    return ViewTable(frame=frame, views=views, source=str(path))


def write_view_table(path: str | Path, frame: str, views: Mapping[str, Sequence[ArrayLike]]) -> Path:
    """Write ``{name: (R_v, R_p)}`` as a view table YAML file (canonical gauge, quaternions x, y, z, w)."""
    out: dict[str, dict[str, list[float]]] = {}
    for name, pose in views.items():
        t = make_target(pose, view_name(name), TargetKind.VIEW, frame)
        q_v, q_p = t.quaternions()
        out[t.name] = {'orbit': [float(x) for x in q_v], 'probe': [float(x) for x in q_p]}
    path = Path(path)
    path.write_text(yaml.safe_dump({'frame': frame, 'views': out}, sort_keys=True))
    return path
