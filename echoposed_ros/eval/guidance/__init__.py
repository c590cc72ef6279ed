"""Offline guidance evaluation (docs/method.md section 7): the nodes' estimator and policy cores, no DDS.

Each run closes the loop of the ROS graph without topics: the simulator session
(``echoposed_sim.session.SimSession``, kinematic world by default, the arm with ``robot=True``)
slices the image at the probe's actual pose, the estimator gives the ensemble mean and its
members, :func:`echoposed_ros.policy.pose_sample` and :func:`~echoposed_ros.policy.control_step`
turn them into a body twist exactly as the controller node does (ROS quaternions x, y, z, w;
image targets carrying their members, so the errors come from the un-gauge-fixed ensemble means
on both sides), and the session holds the twist for one period of the pose rate (the
controller's timer would only repeat it until the next pose). All runs of one volume (intra
static, intra dynamic, inter) go in lockstep: one estimator call per step for all of them. There
is no transport latency (the image of step k is estimated and acted on within step k).

Protocols (docs/evaluation.md):

- intra-patient: per volume ``runs`` runs; start and target poses drawn with
  :func:`echoposed_sim.sampling.sample_poses` about the base pose (orbit up to 20 deg, tilts up to
  20 deg, any turn about the beam); the target image is the slice at the target pose at cardiac
  phase 0; static (the heart stays at phase 0) and dynamic (the heart beats: phase = time /
  cycle) use the same starts and targets. Score: the final actual effective error (degrees,
  simulator ground truth) to the target pose.
- inter-patient: per volume ``i``, target images are the standard views (A2C, A3C, A4C) of the
  next volume of the dataset (cyclic) at phase 0, ``inter_runs`` starts per (volume, view) pair.
  A run converges when the controller reached ``converged`` or the median estimated effective
  error over its last ``inter_window_s`` seconds is at most ``inter_threshold_deg``; a pair is
  kept when at least half its runs converge; its dispersion is the mean effective distance of the
  converged runs' final effective poses ``(u, R)`` from their projected mean
  (``u_bar = normalise(mean u)``, ``R_bar = proj_SO3(mean R)``).
- sigma^2 as a quality signal: Spearman rank correlation between a run's sigma^2 (the target
  image's plus the mean over the run's last second) and its final actual effective error.

Angles inside are radians; reported figures are degrees (named ``*_deg``).

Modules: ``protocol`` (the protocol, run specifications, start and target draws), ``estimators``
(what the loop asks of an estimator; the model and the oracle), ``loop`` (the lockstep closed
loop), ``result`` (one run's record), ``summary`` (statistics and the per-dataset figures),
``dataset`` (one dataset end to end), ``compare`` (two evaluations of the same draws, run by run),
``errors``. Everything public is re-exported here.
"""
from __future__ import annotations

from .compare import COMPARED_MODES, Flip, ModeComparison, compare_evaluations, comparison_json, comparison_text
from .dataset import DatasetResult, VolumeSource, evaluate_dataset
from .errors import GuidanceError
from .estimators import BatchEstimate, ModelEstimator, OracleEstimator, PoseEstimator
from .loop import guide
from .protocol import MODES, GuidanceProtocol, RunSpec, inter_specs, intra_specs, protocol_json, view_targets
from .result import RunResult, state_share
from .summary import (
                      converged_runs,
                      dispersion_deg,
                      inter_pair_summary,
                      mean_effective_pose,
                      miss_auc,
                      run_sigma2,
                      sigma_error_spearman,
                      state_shares,
                      summarize_dataset,
                      summarize_final_errors,
                      summarize_inter,
                      summarize_misses,
                      time_to_view,
                      tolerance_curves,
)

__all__ = [
                      'COMPARED_MODES',
                      'MODES',
                      'BatchEstimate',
                      'DatasetResult',
                      'Flip',
                      'GuidanceError',
                      'GuidanceProtocol',
                      'ModeComparison',
                      'ModelEstimator',
                      'OracleEstimator',
                      'PoseEstimator',
                      'RunResult',
                      'RunSpec',
                      'VolumeSource',
                      'compare_evaluations',
                      'comparison_json',
                      'comparison_text',
                      'converged_runs',
                      'dispersion_deg',
                      'evaluate_dataset',
                      'guide',
                      'inter_pair_summary',
                      'inter_specs',
                      'intra_specs',
                      'mean_effective_pose',
                      'miss_auc',
                      'protocol_json',
                      'run_sigma2',
                      'sigma_error_spearman',
                      'state_share',
                      'state_shares',
                      'summarize_dataset',
                      'summarize_final_errors',
                      'summarize_inter',
                      'summarize_misses',
                      'time_to_view',
                      'tolerance_curves',
                      'view_targets',
]
