"""Configuration of the guidance controller: one frozen, validated dataclass.

Every field is a ROS 2 parameter of the controller node under the same name (see
``config/controller.yaml``); each field's ``metadata`` holds its unit and a one-line
description, which the node turns into a ``ParameterDescriptor``. Angles are radians, times
seconds, rates hertz, lengths metres (SI).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

from .errors import PolicyError
from .fine import FineSettings, check_fine_settings

__all__ = ['ControllerConfig', 'describe_fields', 'fixed_fields']


#: FineSettings field -> the ControllerConfig parameter it comes from (``period`` is ``1 / control_rate``).
_FINE_PARAMETERS = {'step': 'fine_step', 'min_step': 'fine_min_step', 'max_excursion': 'fine_max_excursion',
                    'settle_time': 'fine_settle_time', 'max_time': 'fine_max_time', 'max_turn_speed': 'max_probe_speed',
                    'max_orbit_speed': 'max_orbit_speed', 'period': 'control_rate',
                    'measure_frames': 'fine_measure_frames', 'accept_match': 'fine_accept_match',
                    'attempts': 'fine_attempts', 'retry_turn_scale': 'fine_retry_turn_scale',
                    'rest_match': 'fine_rest_match', 'confirm_time': 'fine_confirm_time', 'prior': 'fine_prior'}


def _f(default: Any, unit: str, description: str, fixed: str = '') -> Any:
    """A field; ``fixed`` says why it cannot change while the node runs (empty: it can)."""
    return field(default=default, metadata={'unit': unit, 'description': description, 'fixed': fixed})


@dataclass(frozen=True)
class ControllerConfig:
    """Gains, limits and thresholds of the proportional policy and its state machine (docs/method.md section 6).

    The policy is ``omega = gain * log(E)`` per factor on the body-frame errors
    ``E_v = P_v^T T_v``, ``E_p = P_p^T T_p``; ``gain`` is the ``k / dt`` of docs/method.md section 6 (1/s), so the
    loop's time constant is ``1 / gain`` seconds whatever the control and frame rates.
    """

    gain: float = _f(1.0, '1/s', 'proportional gain k/dt: body angular velocity per radian of error')
    max_orbit_speed: float = _f(
        0.25, 'rad/s', 'speed limit of the orbit factor |omega_v| (norm clip, direction kept)')
    max_probe_speed: float = _f(
        0.5, 'rad/s', 'speed limit of the probe factor |omega_p| (norm clip, direction kept)')
    deadband: float = _f(
        0.005, 'rad', 'per-factor deadband: a factor whose error angle is below it gets zero velocity')
    converge_tolerance: float = _f(
        0.05, 'rad', 'estimated effective error below which a frame counts towards convergence')
    converge_frames: int = _f(
        10, 'frames', 'consecutive pose frames within tolerance before the state becomes converged')
    release_tolerance: float = _f(
        0.1, 'rad', 'estimated effective error above which a converged controller resumes guiding')
    uncertainty_threshold: float = _f(
        0.05, 'rad^2', 'sigma^2 above which the probe is held (state hold_uncertain, zero twist; after a '
        'confident streak first coasting, up to coast_time)')
    coast_time: float = _f(
        0.0, 's', 'an uncertain pose within this long of the last trusted confident pose keeps guiding from that '
        'pose carried forward by the commands since (state coasting, odometry) instead of holding; 0 = hold at once')
    coast_after_frames: int = _f(
        3, 'frames', 'consecutive confident pose frames that make an estimate trusted for coasting')
    coast_agreement: float = _f(
        0.1, 'rad', 'a lone confident frame among unsure ones is trusted for coasting only within this of where '
        'the odometry from the last trusted estimate puts the probe (effective error)')
    stale_timeout: float = _f(
        0.2, 's', 'no valid pose for longer than this gives state stale_input and zero twist',
        fixed='the stale watchdog timer is built with this period at start-up')
    orbit_radius: float = _f(
        0.1, 'm', 'orbit radius r (apex to heart centre), scales the Cartesian linear velocity',
        fixed='a property of the set-up (probe holder and heart), measured once; a change mid-run would '
        "rescale the arm's commands under a running loop")
    control_rate: float = _f(
        30.0, 'Hz', 'rate of the control timer (commands are published every cycle)',
        fixed='the control timer is built with this period at start-up')
    cue_min_angle: float = _f(
        0.0175, 'rad', 'components of the operator cue smaller than this are left out')
    recover_after: float = _f(
        1.0, 's', 'unsure (hold_uncertain) for this long with no confident frame: return along the path to the '
        'last confident view, else explore, else lost')
    max_recoveries: int = _f(2, 'returns', 'returns along the path per target (0 = none)')
    explore_speed: float = _f(
        0.3, 'rad/s', 'exploration: turn about the beam at this speed (at most max_probe_speed) when unsure with '
        'no path to undo (0 = none)')
    explore_turn: float = _f(6.2832, 'rad', 'exploration turns at most this far in all, then the state is lost')
    fine_enabled: bool = _f(
        True, 'bool', 'image targets: after the coarse loop, align by the view match to the target image (fine stage)')
    fine_entry_tolerance: float = _f(
        0.15, 'rad', 'estimated effective error below which the fine stage starts, once converge_frames more '
        'frames have been below it than above (a beating heart jitters the estimate)')
    fine_step: float = _f(0.05, 'rad', 'first step of the fine search along each probe axis')
    fine_min_step: float = _f(0.007, 'rad', 'the fine search ends once its step is below this')
    fine_max_excursion: float = _f(
        0.35, 'rad', 'the fine search never takes the probe farther than this from where it started '
        '(norm of the turns and orbit angles along its five axes)')
    fine_max_time: float = _f(30.0, 's', 'the fine search ends after this long')
    fine_settle_time: float = _f(
        0.05, 's', "after each fine move, frames taken sooner than this (by their header stamps) are not measured: "
        "the arm's lag behind its commands")
    fine_measure_frames: int = _f(
        1, 'frames', 'frames averaged per fine search point (beating hearts: more frames, less noise, slower)')
    fine_attempts: int = _f(
        2, 'searches', 'a fine search that ends below fine_accept_match starts again from its best point, up to '
        'this many searches (then fine_rest_match decides where the probe stays)')
    fine_accept_match: float = _f(
        0.99, 'NCC', 'view match (NCC) the end of the fine search needs for converged; below it the state is '
        'mismatch (zero twist): the estimate and the image disagree')
    fine_retry_turn_scale: float = _f(
        2.0, 'x', 'a fine search after a failed one steps about the beam this many times fine_step (the other axes: '
        'fine_step)')
    fine_rest_match: float = _f(
        0.97, 'NCC', 'a fine search that ends below fine_accept_match leaves the probe at its best view if that '
        'matched at least this (the view nearly found); below it, back where the fine stage began (no view like '
        'the target: the estimate decides)')
    fine_confirm_time: float = _f(
        1.0, 's', 'a fine search whose best view reached fine_accept_match measures it again over this long (about a '
        'cardiac cycle); only a mean match at least fine_accept_match is converged (0 = the best single frame)')
    fine_prior: float = _f(
        1.0, 'x', "each fine sweep first measures the point this share of the confident pose estimate's remaining "
        'error away, and starts from it if it matches better (0 = the fine search does not use the estimate)')
    target_split: float = _f(
        0.0, 'rad', "image targets: groups of the target estimate's members (two or more within this of one member) "
        'whose views lie farther than this from the mean of all members are read as further views, tried in turn '
        'where the fine stage at the mean finds no view like the target, the farthest first (0 = off: the mean only)',
        fixed='the target is read with it when it is set')
    match_smoothing: float = _f(
        2.0, 'px', 'view match: mean of the NCC of raw frames and of frames blurred by Gaussians of this and twice '
        'this sigma',
        fixed='the target view is prepared with it when it is set')

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ('bool', bool):
                if not isinstance(value, bool):
                    raise PolicyError(f'ControllerConfig.{f.name}: expected true or false, got {value!r}')
                continue
            if f.type in ('int', int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise PolicyError(f'ControllerConfig.{f.name}: expected an integer number of '
                                      f'{f.metadata["unit"]}, got {value!r}')
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise PolicyError(f'ControllerConfig.{f.name}: expected a finite number in '
                                      f'{f.metadata["unit"]}, got {value!r}')
                object.__setattr__(self, f.name, float(value))
        positive = ('gain', 'max_orbit_speed', 'max_probe_speed', 'converge_tolerance', 'release_tolerance',
                    'uncertainty_threshold', 'stale_timeout', 'orbit_radius', 'control_rate', 'fine_entry_tolerance')
        for name in positive:
            value = getattr(self, name)
            if value <= 0:
                raise PolicyError(f'ControllerConfig.{name}: expected > 0 ({_unit(name)}), got {value!r}')
        for name in ('deadband', 'cue_min_angle', 'coast_time', 'coast_agreement', 'match_smoothing', 'recover_after',
                     'explore_speed', 'explore_turn', 'target_split'):
            value = getattr(self, name)
            if value < 0:
                raise PolicyError(f'ControllerConfig.{name}: expected >= 0 ({_unit(name)}), got {value!r}')
        if self.max_recoveries < 0:
            raise PolicyError(f'ControllerConfig.max_recoveries: expected >= 0, got {self.max_recoveries!r}')
        for name in ('converge_frames', 'coast_after_frames'):
            if getattr(self, name) < 1:
                raise PolicyError(f'ControllerConfig.{name}: expected >= 1, got {getattr(self, name)!r}')
        # the fine search's rules, in one place (fine.py), naming this config's parameters
        check_fine_settings(self._fine_values(), _FINE_PARAMETERS, 'ControllerConfig')
        if self.release_tolerance < self.converge_tolerance:
            raise PolicyError(
                f'ControllerConfig.release_tolerance: expected >= converge_tolerance '
                f'({self.converge_tolerance!r} rad), got {self.release_tolerance!r}')
        # With both factors inside the deadband the effective error is at most sqrt(5) * deadband
        # (u moves with the orbit angle, R = R_v R_p with the sum of both angles): a deadband that
        # large could stop the probe short of the tolerance forever.
        if math.sqrt(5.0) * self.deadband >= self.converge_tolerance:
            raise PolicyError(
                f'ControllerConfig.deadband: expected sqrt(5) * deadband < converge_tolerance '
                f'({self.converge_tolerance!r} rad) so the probe cannot stop outside the tolerance, '
                f'got deadband = {self.deadband!r} rad')

    @cached_property
    def fine_settings(self) -> FineSettings:
        """The fine search's bounds from these parameters (speed limits: ``max_probe_speed`` for turns and
        tilts, ``max_orbit_speed`` for the orbit axes; one command per ``control_period``); built once per
        config, not per control cycle."""
        return FineSettings(**self._fine_values())

    def _fine_values(self) -> dict[str, Any]:
        """``{FineSettings field: value}`` from these parameters (:data:`_FINE_PARAMETERS`)."""
        values = {fine: getattr(self, own) for fine, own in _FINE_PARAMETERS.items() if fine != 'period'}
        return values | {'period': self.control_period}

    @property
    def control_period(self) -> float:
        """s, ``1 / control_rate``."""
        return 1.0 / self.control_rate

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ControllerConfig:
        """Build from a mapping of field names (e.g. ROS parameters); unknown keys raise PolicyError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PolicyError(f'ControllerConfig: unknown parameter(s) {unknown}; expected some of {sorted(known)}')
        return cls(**dict(values))


def _unit(name: str) -> str:
    """The unit of :class:`ControllerConfig` field ``name`` (its metadata)."""
    return ControllerConfig.__dataclass_fields__[name].metadata['unit']


def describe_fields() -> dict[str, tuple[Any, str, str]]:
    """``{name: (default, unit, description)}`` for every field of :class:`ControllerConfig`, in order."""
    return {f.name: (f.default, f.metadata['unit'], f.metadata['description']) for f in fields(ControllerConfig)}


def fixed_fields() -> dict[str, str]:
    """``{name: why}`` for the fields that cannot change while the controller runs; every other
    field may (a changed config is validated as a whole before it is used)."""
    return {f.name: f.metadata['fixed'] for f in fields(ControllerConfig) if f.metadata['fixed']}
