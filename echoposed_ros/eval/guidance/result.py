"""The record of one finished guidance run (:class:`RunResult`: per-step errors in degrees,
sigma^2 in rad^2, controller states) and the share of steps spent in a controller state."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...geometry import Pose, effective_error_parts
from ...policy import GuidanceState

__all__ = ['RunResult', 'state_share']

Array = NDArray[np.float64]


@dataclass
class RunResult:
    """One finished run. Per step k = 0..S (the image of step k, before its command):
    ``actual_deg`` ground-truth effective error to ``target_true`` (NaN when unknown),
    ``estimated_deg`` the controller's estimated effective error, ``sigma2`` (rad^2), ``states``
    (:class:`GuidanceState` values). ``final_pose`` is where the probe ended (canonical gauge).
    ``target_uncertain``: the target's sigma^2 exceeds the controller's ``uncertainty_threshold``
    (the controller node would refuse that image target; the harness guides anyway and counts it)."""

    volume: str
    mode: str
    view: str
    target_volume: str
    index: int
    start: Pose
    target_true: Pose | None
    final_pose: Pose
    target_sigma2: float
    actual_deg: Array
    estimated_deg: Array
    sigma2: Array
    states: NDArray[np.int8]
    converged: bool
    unreachable_steps: int = 0
    dt: float = 1.0 / 30.0
    target_uncertain: bool = False
    view_match: Array | None = None

    @property
    def initial_error_deg(self) -> float:
        return float(self.actual_deg[0])

    @property
    def final_error_deg(self) -> float:
        return float(self.actual_deg[-1])

    @property
    def time_s(self) -> float:
        return (len(self.actual_deg) - 1) * self.dt

    def window(self, seconds: float) -> slice:
        """The last ``seconds`` of the run's steps (at least one)."""
        n = max(1, int(round(seconds / self.dt)))
        return slice(max(0, len(self.actual_deg) - n), None)

    @property
    def time_to_view_s(self) -> float:
        """s from the start to the first ``converged`` step (inf: never converged)."""
        hit = np.flatnonzero(self.states == GuidanceState.CONVERGED)
        return float(hit[0] * self.dt) if hit.size else float('inf')

    @property
    def final_estimated_deg(self) -> float:
        """The controller's estimated effective error over the last second (median, deg; NaN if none)."""
        e = self.estimated_deg[self.window(1.0)]
        return float(np.nanmedian(e)) if np.isfinite(e).any() else float('nan')

    def final_error_parts_deg(self) -> tuple[float, Array] | None:
        """Where the run ended against its true target, in parts (deg): the apex angle and the probe
        turn still to make ``(3,)`` about the final probe's x, y, z (:func:`effective_error_parts`);
        None without a true target."""
        if self.target_true is None:
            return None
        apex, turn = effective_error_parts(self.final_pose, self.target_true)
        return math.degrees(float(apex)), np.degrees(turn)

    def quiet_miss(self, tol_deg: float = 5.0) -> bool:
        """Ended beyond ``tol_deg`` of the true target while the estimate put it within ``tol_deg``
        and the controller was neither holding nor coasting on an uncertain pose in the last second:
        the estimator believed it had arrived."""
        w = self.window(1.0)
        unsure = np.isin(self.states[w], (GuidanceState.HOLD_UNCERTAIN, GuidanceState.COASTING,
                                          GuidanceState.RECOVERING, GuidanceState.EXPLORING, GuidanceState.LOST))
        return bool(self.final_error_deg > tol_deg and self.final_estimated_deg <= tol_deg and not np.any(unsure))

    def summary(self) -> dict[str, Any]:
        """JSON-ready per-run facts (no per-step traces)."""
        w = self.window(1.0)
        parts = self.final_error_parts_deg()
        return {'volume': self.volume, 'mode': self.mode, 'view': self.view, 'target_volume': self.target_volume,
                'index': self.index, 'initial_error_deg': _num(self.initial_error_deg),
                'final_error_deg': _num(self.final_error_deg),
                'final_estimated_error_deg': _num(self.final_estimated_deg),
                'final_apex_deg': None if parts is None else _num(parts[0]),
                'final_turn_xyz_deg': None if parts is None else [float(v) for v in parts[1]],
                'target_sigma2': _num(self.target_sigma2), 'final_sigma2': _num(float(np.mean(self.sigma2[w]))),
                'converged': bool(self.converged), 'time_s': self.time_s,
                'target_uncertain': bool(self.target_uncertain),
                'hold_share': state_share([self], GuidanceState.HOLD_UNCERTAIN),
                'coast_share': state_share([self], GuidanceState.COASTING),
                'unreachable_steps': int(self.unreachable_steps),
                'final_view_match': None if self.view_match is None or not len(self.view_match)
                else _num(float(self.view_match[-1])),
                'time_to_view_s': _num(self.time_to_view_s),
                'fine_share': state_share([self], GuidanceState.FINE_ALIGNING),
                'recover_share': state_share([self], GuidanceState.RECOVERING),
                'explore_share': state_share([self], GuidanceState.EXPLORING),
                'final_state': GuidanceState(int(self.states[-1])).label if len(self.states) else None}


def state_share(results: Sequence[RunResult], state: GuidanceState) -> float:
    """Share of all the runs' control steps spent in ``state`` (0 without steps)."""
    states = np.concatenate([r.states for r in results]) if results else np.zeros(0, np.int8)
    return float(np.mean(states == state)) if states.size else 0.0


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
