"""The guidance state machine: one pure control step per timer tick.

States (values equal ``GuidanceStatus.STATE_*``), checked in this order each cycle:

- ``stopped``: guidance stopped by service (or not started): zero twist.
- ``idle``: no target, or no pose received yet: zero twist.
- ``stale_input``: the newest pose is older than ``stale_timeout`` (0.2 s): zero twist. Ages
  are measured on the controller's clock at reception, so staleness is found without input.
- ``coasting``: sigma^2 above ``uncertainty_threshold`` (or NaN) at most ``coast_time`` after
  the reception of the last trusted confident frame: the proportional command from where that frame's
  estimate, carried forward by the commands given since (odometry, :mod:`.coasting`), puts the probe
  (within the speed limits; never from an estimate older than ``coast_time``). A band of unsure views
  on the way to a target is crossed instead of stopping the probe at its edge (a static image stays
  unsure). Trusted: a frame that ends ``coast_after_frames`` consecutive confident frames (counted by
  frame), or a lone confident frame among unsure ones that lies within ``coast_agreement`` of where
  the odometry puts the probe; any other lone confident frame (a probe lifted off can read sure by
  chance) gets its one command, as without coasting, and ends the coast: the next unsure frame holds.
  It never counts towards convergence; ``coast_time`` 0 turns it off.
- ``hold_uncertain``: sigma^2 above ``uncertainty_threshold`` and not coasting, or the pose is
  unusable (NaN, not a rotation) or in another frame than the target: zero twist ("no heart /
  not sure").
- ``converged``: the estimated effective error was below ``converge_tolerance`` for
  ``converge_frames`` consecutive pose frames (frames, not ticks); stays converged until the
  error exceeds ``release_tolerance``: zero twist.
- ``guiding``: the proportional twist towards the target.

Coarse to fine (image targets, ``fine_enabled``, and the caller scoring each live frame against the target
image: ``view``, :mod:`.similarity`): where the coarse loop would converge it enters the fine stage
instead, once ``converge_frames`` more frames have had an estimated effective error below
``fine_entry_tolerance`` than above it:

- ``fine_aligning``: the view-match search of :mod:`.fine` drives the probe (probe-frame twist); sigma^2 does
  not hold it (the image, not the estimate, is measured); a confident estimate only proposes where each sweep
  looks first (``fine_prior``), and the match decides;
- then ``converged`` when the best view match it found is at least ``fine_accept_match``: both signals
  agree; it stays converged until the live match falls below that for ``converge_frames`` frames;
- or, when the match stays below it (second opinion: the estimate calls the view on target, the image
  says otherwise), ``mismatch`` (zero twist): at the search's best view if it matched at least
  ``fine_rest_match`` (the view nearly found), until the target is set again or guidance restarts, or
  until the estimate puts the probe farther than ``fine_entry_tolerance + fine_max_excursion`` from the
  target (farther than the search can have taken it: the probe or the patient moved); else (no view like
  the target: another heart or view) back where the fine stage began. In both cases the coarse loop then
  guides alone, and where it would converge the state is ``mismatch`` again.

A target image whose estimate's members the ensemble splits into groups (``Target.readings``, ``target_split``)
is guided to as the mean of all members first. Where the fine stage there finds no view like the target (the
search ends below ``fine_rest_match``), the loop guides on to the next reading (state ``guiding``, the cue says
so) and aligns there, and so on; after the last one the coarse loop finishes at the mean of all members, as
for any target, in ``mismatch``.

Unsure for longer (:mod:`.recovery`): after ``recover_after`` seconds of ``hold_uncertain`` with no confident frame,

- ``recovering``: back along the commands given since the last confident frame (odometry), at most
  ``max_recoveries`` times per target; the coarse loop approaches again from there;
- ``exploring``: with no path to undo, a turn about the beam at ``explore_speed``, at most ``explore_turn``;
- ``lost``: zero twist, cue "heart lost: reposition the probe".

Every path but ``guiding``, ``coasting``, ``fine_aligning``, ``recovering`` and ``exploring`` returns exactly
zero twists. Times are seconds on one clock.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum

import numpy as np
from numpy.typing import ArrayLike

from echoposed_ros.geometry import CartesianTwist, GeometryError, Pose, as_pose, quat_xyzw_to_matrix

from .coasting import Anchor, agrees, carried
from .config import ControllerConfig
from .controller import (
    BodyTwist,
    TrackingResidual,
    probe_frame_to_body_twist,
    probe_frame_twist,
    proportional_twist,
    tracking_error,
    ungauged_mean,
)
from .cues import cue_text, operator_cue, state_cue
from .fine import (
    FineMemory,
    ViewSample,
    axis_rates_to_probe_twist,
    fine_start,
    fine_step,
    probe_twist_to_axis_rates,
    rests_at_best,
)
from .recovery import RecoveryMemory, record_command, recovery_step, saw_confident, saw_lone_confident
from .targets import Target

__all__ = ['ControlOutput', 'GuidanceMemory', 'GuidanceState', 'PoseSample', 'control_step', 'pose_sample']


class GuidanceState(IntEnum):
    """Guidance states; values equal ``echoposed_msgs/GuidanceStatus.STATE_*``."""

    IDLE = 0
    GUIDING = 1
    CONVERGED = 2
    HOLD_UNCERTAIN = 3
    STALE_INPUT = 4
    STOPPED = 5
    COASTING = 6
    FINE_ALIGNING = 7
    MISMATCH = 8
    RECOVERING = 9
    EXPLORING = 10
    LOST = 11
    SWEEPING = 12

    @property
    def label(self) -> str:
        """Lower-case name as in ``GuidanceStatus.state_name`` ("hold_uncertain", ...)."""
        return self.name.lower()


@dataclass(frozen=True)
class PoseSample:
    """One received pose estimate.

    pose: ``(R_v, R_p)`` (3, 3) rotations, or None when the message was unusable (``problem``
    says why); uncertainty: sigma^2, rad^2; received: s, controller clock at reception; seq:
    increases by one per received message (frames are counted by it); frame: header frame_id;
    ungauged: the members' un-gauge-fixed mean (``controller.ungauged_mean``) or None.
    """

    pose: Pose | None
    uncertainty: float
    received: float
    seq: int
    frame: str = ''
    problem: str = ''
    ungauged: Pose | None = None


def pose_sample(orbit_xyzw: ArrayLike, probe_xyzw: ArrayLike, uncertainty: float, received: float, seq: int,
                frame: str = '', member_orbits_xyzw: ArrayLike = (), member_probes_xyzw: ArrayLike = ()) -> PoseSample:
    """A :class:`PoseSample` from ROS quaternions (x, y, z, w); NaN or non-unit quaternions give ``pose=None``.

    ``member_*_xyzw`` (K, 4): the aligned ensemble members of the message (may be empty).
    Never raises on bad pose content: the controller must hold, not crash.
    """
    try:
        pose: Pose | None = as_pose((quat_xyzw_to_matrix(orbit_xyzw, 'orbit'),
                                     quat_xyzw_to_matrix(probe_xyzw, 'probe')), 'pose')
        problem = ''
    except (GeometryError, TypeError, ValueError) as exc:
        pose, problem = None, f'invalid pose: {exc}'
    return PoseSample(pose=pose, uncertainty=float(uncertainty), received=float(received), seq=int(seq),
                      frame=frame, problem=problem,
                      ungauged=ungauged_mean(member_orbits_xyzw, member_probes_xyzw, pose))


@dataclass(frozen=True)
class GuidanceMemory:
    """What the state machine carries between ticks: consecutive frames within tolerance, the last
    counted frame's seq, whether it has converged, the last trusted estimate carried by the commands since
    (``anchor``, coasting's odometry; None: nothing to coast on), the consecutive confident frames so far;
    the fine search (None in the coarse stage), whether it ended converged, the last view frame counted and
    the frames since in a row below ``fine_accept_match``; the path since the last confident frame and the
    state of a return or exploration (:mod:`.recovery`); whether a fine alignment for this target ended in
    disagreement (``fine_failed``), and whether the probe still rests at that search's best view
    (``fine_rest``); for a target image read more than one way (``Target.readings``), the candidate guided to
    (``reading``: 0 the estimate as set, k >= 1 its reading k - 1).
    ``GuidanceMemory()`` is the reset state."""

    frames_within_tolerance: int = 0
    last_seq: int = -1
    converged: bool = False
    anchor: Anchor | None = None
    confident_frames: int = 0
    fine: FineMemory | None = None
    fine_converged: bool = False
    view_seq: int = -1
    low_match_frames: int = 0
    recovery: RecoveryMemory = RecoveryMemory()
    fine_failed: bool = False
    fine_rest: bool = False
    reading: int = 0


@dataclass(frozen=True)
class ControlOutput:
    """One control cycle's result.

    twist: body twists (rad/s); cartesian: the same motion as a probe-frame twist (v in m/s, omega
    in rad/s); error: None when no comparison was made; uncertainty: sigma^2 (rad^2, NaN if none);
    cue: operator cue text; ungauged: the errors came from un-gauge-fixed ensemble means (body
    twists exact for any unknown left factor) rather than from the canonical poses; view_match: the
    newest frame's match to the target image (NaN: none); disagree: the estimate calls the view on target
    and the image does not (state ``mismatch``).
    """

    state: GuidanceState
    twist: BodyTwist
    cartesian: CartesianTwist
    error: TrackingResidual | None
    uncertainty: float
    frames_within_tolerance: int
    cue: str
    ungauged: bool = False
    view_match: float = float('nan')
    disagree: bool = False


_REST = 'resting at the most target-like view the search found'


def _hold(state: GuidanceState, memory: GuidanceMemory, error: TrackingResidual | None = None,
          uncertainty: float = float('nan'), detail: str = '', view_match: float = float('nan')
          ) -> tuple[GuidanceMemory, ControlOutput]:
    zero = BodyTwist.zero()
    return memory, ControlOutput(state, zero, CartesianTwist(np.zeros(3), np.zeros(3)), error, uncertainty,
                                 memory.frames_within_tolerance, state_cue(state.label, detail),
                                 view_match=view_match, disagree=state == GuidanceState.MISMATCH)


def control_step(memory: GuidanceMemory, *, now: float, active: bool, target: Target | None,
                 sample: PoseSample | None, config: ControllerConfig,
                 view: ViewSample | None = None) -> tuple[GuidanceMemory, ControlOutput]:
    """One control cycle at time ``now`` (s): the new memory and the command (module docstring).

    ``view``: the newest live frame's match to the target image, or None (no image target, or no
    frame scored yet); with it (and ``config.fine_enabled``) the loop goes coarse to fine.
    """
    if not active:
        return _hold(GuidanceState.STOPPED, GuidanceMemory())
    if target is None:
        return _hold(GuidanceState.IDLE, GuidanceMemory())
    if sample is None:
        return _hold(GuidanceState.IDLE, GuidanceMemory(), detail='waiting for a first pose')
    age = now - sample.received
    if not np.isfinite(age) or age > config.stale_timeout:
        return _hold(GuidanceState.STALE_INPUT, GuidanceMemory(), uncertainty=sample.uncertainty,
                     detail=f'last pose {age:.2f} s ago')
    if sample.pose is None:
        return _hold(GuidanceState.HOLD_UNCERTAIN, GuidanceMemory(), uncertainty=sample.uncertainty,
                     detail=sample.problem or 'invalid pose')
    if target.frame and sample.frame and target.frame != sample.frame:
        return _hold(GuidanceState.HOLD_UNCERTAIN, GuidanceMemory(), uncertainty=sample.uncertainty,
                     detail=f'pose frame {sample.frame!r} is not the target frame {target.frame!r}')
    # A target image read more than one way: guide to the candidate being visited (module docstring).
    target = target.candidate(memory.reading)
    # Un-gauge-fixed means on both sides when both have them (exact body twists for any left
    # factor, see controller docstring); never one of each.
    ungauged = sample.ungauged is not None and target.ungauged is not None
    current, goal = (sample.ungauged, target.ungauged) if ungauged else (sample.pose, target.pose)
    error = tracking_error(current, goal)
    fine = config.fine_enabled and view is not None and not memory.fine_failed
    match = float(view.score) if view is not None else float('nan')
    if fine and memory.fine is not None:
        return _fine(memory, now=now, current=current, error=error, sample=sample, view=view, config=config,
                     candidates=target.candidates)
    if not np.isfinite(sample.uncertainty) or sample.uncertainty > config.uncertainty_threshold:
        # The error is still reported (sigma^2 against error is an evaluation signal).
        anchor = carried(memory.anchor, now, config.coast_time)
        if anchor is not None:
            # steer by where the commands since the last trusted estimate put the probe (odometry); an unsure
            # frame ends the confident streak
            reckoned = tracking_error(anchor.pose, target.ungauged if anchor.ungauged else target.pose)
            twist = proportional_twist(reckoned, config)
            cartesian = probe_frame_twist(anchor.pose, twist, config.orbit_radius)
            rm = record_command(memory.recovery, now, cartesian, twist.orbit, twist.probe, config.stale_timeout)
            cue = state_cue('coasting', f'sigma^2 {sample.uncertainty:.3g} rad^2 > {config.uncertainty_threshold:.3g}, '
                                        f'{now - anchor.received:.2f} of {config.coast_time:.2f} s by odometry')
            out = ControlOutput(GuidanceState.COASTING, twist, cartesian, error, sample.uncertainty,
                                memory.frames_within_tolerance, cue, anchor.ungauged)
            return replace(memory, confident_frames=0, recovery=rm, anchor=replace(anchor, command=twist)), out
        unsure = f'sigma^2 {sample.uncertainty:.3g} rad^2 > {config.uncertainty_threshold:.3g}'
        rm, rec = recovery_step(memory.recovery, now, recover_after=config.recover_after,
                                max_recoveries=config.max_recoveries,
                                explore_speed=min(config.explore_speed, config.max_probe_speed),
                                explore_turn=config.explore_turn, cap=config.stale_timeout)
        held = GuidanceMemory(recovery=rm, fine_failed=memory.fine_failed, fine_rest=memory.fine_rest,
                              reading=memory.reading)
        if rec.mode in ('hold', 'lost'):
            state = GuidanceState.HOLD_UNCERTAIN if rec.mode == 'hold' else GuidanceState.LOST
            return _hold(state, held, error, sample.uncertainty, detail=unsure, view_match=match)
        state = GuidanceState.RECOVERING if rec.mode == 'return' else GuidanceState.EXPLORING
        detail = (f'{unsure}; back along the path to the last confident view' if rec.mode == 'return' else
                  f'{unsure}; turned {np.degrees(rm.turned):.0f} of {np.degrees(config.explore_turn):.0f} deg')
        return held, ControlOutput(state, BodyTwist(rec.orbit, rec.probe), rec.cartesian, error, sample.uncertainty,
                                   0, state_cue(state.label, detail), view_match=match)

    if memory.fine_rest:   # at the failed search's best view: stay, unless the probe has clearly been moved away
        if error.effective <= config.fine_entry_tolerance + config.fine_max_excursion:
            return _hold(GuidanceState.MISMATCH, replace(memory, last_seq=sample.seq), error, sample.uncertainty,
                         view_match=match, detail=_REST)
        memory = replace(memory, fine_rest=False)
    frames, converged, streak = memory.frames_within_tolerance, memory.converged, memory.confident_frames
    tolerance = config.fine_entry_tolerance if fine else config.converge_tolerance
    if sample.seq != memory.last_seq:  # a new frame: count it once
        if error.effective < tolerance:
            frames += 1
        else:   # to converge: consecutive frames; to enter the fine stage: more within than beyond
            frames = max(0, frames - 1) if fine else 0
        streak += 1
    if converged and error.effective > config.release_tolerance:
        converged, frames = False, 0
    if not converged and frames >= config.converge_frames:
        if fine:    # coarse to fine: the image takes over from here
            memory = GuidanceMemory(frames_within_tolerance=frames, last_seq=sample.seq,
                                    fine=fine_start(now, config.fine_settings), reading=memory.reading)
            return _fine(memory, now=now, current=current, error=error, sample=sample, view=view, config=config,
                         candidates=target.candidates)
        converged = True
    # a confident spell (not a lone sure frame among unsure ones) starts the path to return to afresh
    new_frame = sample.seq != memory.last_seq
    new_spell = new_frame and streak >= config.coast_after_frames
    rm = (saw_confident(memory.recovery, now) if new_spell else
          saw_lone_confident(memory.recovery) if new_frame else memory.recovery)
    # what may be coasted on: a confident spell's estimate, or a lone confident frame where the reckoning from
    # the last trusted one says the probe is (a probe lifted off can read sure by chance, never there)
    anchor = carried(memory.anchor, now, config.coast_time)
    trusted = new_spell or (not new_frame and anchor is not None) or (
        anchor is not None and anchor.ungauged == ungauged and agrees(anchor, current, config.coast_agreement))
    memory = GuidanceMemory(frames_within_tolerance=frames, last_seq=sample.seq, converged=converged,
                            confident_frames=streak, recovery=rm, fine_failed=memory.fine_failed,
                            reading=memory.reading)
    if converged and memory.fine_failed:   # the estimate says arrived, the image disagreed: not converged
        return _hold(GuidanceState.MISMATCH, memory, error, sample.uncertainty, view_match=match,
                     detail='the fine alignment found no matching view; the estimate alone put the probe here')
    if converged:
        return _hold(GuidanceState.CONVERGED, memory, error, sample.uncertainty, view_match=match)

    twist = proportional_twist(error, config)
    cartesian = probe_frame_twist(current, twist, config.orbit_radius)
    cue = cue_text(operator_cue(current, goal), config.cue_min_angle)
    out = ControlOutput(GuidanceState.GUIDING, twist, cartesian, error, sample.uncertainty, frames, cue, ungauged,
                        view_match=match)
    rm = record_command(rm, now, cartesian, twist.orbit, twist.probe, config.stale_timeout)
    memory = replace(memory, recovery=rm)
    if not trusted:   # one command, as without coasting; the next unsure frame holds
        return memory, out
    if new_frame or anchor is None:
        anchor = Anchor(current, ungauged, twist, float(now), sample.received)
    return replace(memory, anchor=replace(anchor, command=twist)), out


def _fine(memory: GuidanceMemory, *, now: float, current: Pose, error: TrackingResidual, sample: PoseSample,
          view: ViewSample, config: ControllerConfig, candidates: int = 1) -> tuple[GuidanceMemory, ControlOutput]:
    """The fine stage (module docstring): one step of the view-match search, or its outcome once it ended."""
    assert memory.fine is not None
    match = float(view.score)
    if memory.fine_converged:
        if view.seq != memory.view_seq:
            low = memory.low_match_frames + 1 if not match >= config.fine_accept_match else 0
            memory = replace(memory, view_seq=view.seq, low_match_frames=low)
            if low >= config.converge_frames:   # the view was lost (patient or probe moved): start again
                return _hold(GuidanceState.GUIDING, GuidanceMemory(reading=memory.reading), error, sample.uncertainty,
                             view_match=match)
        return _hold(GuidanceState.CONVERGED, memory, error, sample.uncertainty,
                     detail=f'view match {memory.fine.best_score:.3f}', view_match=match)
    prior = None
    if sample.uncertainty <= config.uncertainty_threshold:   # where the estimate puts the target, in the search's axes
        to_target = probe_frame_twist(current, BodyTwist(error.orbit, error.probe), config.orbit_radius)
        prior = probe_twist_to_axis_rates(to_target, config.orbit_radius)
    fm, out = fine_step(memory.fine, now=now, view=view, settings=config.fine_settings, prior=prior)
    memory = replace(memory, fine=fm, view_seq=view.seq)
    if out.done and not np.any(out.rates):
        if fm.best_score >= config.fine_accept_match:
            return _fine(replace(memory, fine_converged=True), now=now, current=current,
                         error=error, sample=sample, view=view, config=config, candidates=candidates)
        if rests_at_best(fm, config.fine_settings):
            # The view nearly found: the probe rests at the search's best view, reported as mismatch.
            return _hold(GuidanceState.MISMATCH, GuidanceMemory(fine_failed=True, fine_rest=True, last_seq=sample.seq,
                                                                recovery=memory.recovery, reading=memory.reading),
                         error, sample.uncertainty, view_match=match,
                         detail=f'best view match {fm.best_score:.3f} < {config.fine_accept_match:.3f}; {_REST}')
        # No view like the target (another heart or view): the probe is back where the fine alignment began.
        if memory.reading + 1 < candidates:   # the target image also reads another way: try that view
            nxt = memory.reading + 1
            return _hold(GuidanceState.GUIDING, GuidanceMemory(recovery=memory.recovery, reading=nxt), error,
                         sample.uncertainty, view_match=match,
                         detail=f'best view match {fm.best_score:.3f}; the target image also reads another way: '
                                f'on to reading {nxt} of {candidates - 1}')
        # The coarse loop finishes by the estimate (the mean of all members) alone and its end is reported as
        # mismatch, not converged.
        return _hold(GuidanceState.GUIDING, GuidanceMemory(fine_failed=True, recovery=memory.recovery), error,
                     sample.uncertainty, view_match=match, detail='image disagrees; back to the coarse loop')
    cartesian = axis_rates_to_probe_twist(out.rates, config.orbit_radius)
    twist = probe_frame_to_body_twist(current, cartesian, config.orbit_radius)
    cue = state_cue('fine_aligning', f'view match {match:.3f}, step {np.degrees(fm.step):.1f} deg')
    return memory, ControlOutput(GuidanceState.FINE_ALIGNING, twist, cartesian, error, sample.uncertainty,
                                 memory.frames_within_tolerance, cue, False, view_match=match)
