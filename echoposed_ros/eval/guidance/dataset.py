"""One dataset's guidance evaluation: :func:`evaluate_dataset` draws every volume's runs
(intra-patient static and dynamic, inter-patient against the next volume's views), guides them and
summarises them into a :class:`DatasetResult`."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from echoposed_sim.sector import SectorGeometry
from echoposed_sim.volume import Volume

from ...geometry import Pose
from ...policy import ControllerConfig
from .errors import GuidanceError
from .estimators import PoseEstimator
from .loop import guide
from .protocol import GuidanceProtocol, inter_specs, intra_specs, view_targets
from .result import RunResult
from .summary import summarize_dataset

__all__ = ['DatasetResult', 'VolumeSource', 'evaluate_dataset']


@dataclass
class DatasetResult:
    """One dataset's runs and figures: ``name``, ``volumes`` (names, in order), ``results``
    (every run), ``summary`` (:func:`summarize_dataset`), ``source`` (where the volumes came from)."""

    name: str
    volumes: list[str]
    results: list[RunResult]
    summary: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)

    def as_json(self, runs: bool = True) -> dict[str, Any]:
        out = {'source': self.source, 'volumes': self.volumes, **self.summary}
        if runs:
            out['run_table'] = [r.summary() for r in self.results]
        return out


VolumeSource = Volume | Callable[[], Volume]


def _load(item: VolumeSource) -> Volume:
    v = item() if callable(item) else item
    if not isinstance(v, Volume):
        raise GuidanceError(f'expected an echoposed_sim Volume, got {type(v).__name__}')
    return v


def evaluate_dataset(name: str, volumes: Sequence[VolumeSource], estimator: PoseEstimator,
                     config: ControllerConfig, protocol: GuidanceProtocol, sector: SectorGeometry, *,
                     source: dict[str, Any] | None = None, progress: bool = False,
                     inter: bool = True, fusion_window_s: float = 0.0,
                     fusion_max_sigma2: float = 0.5) -> DatasetResult:
    """Intra static, intra dynamic and inter-patient runs on ``volumes`` (Volumes, or zero-argument
    callables loading one, so that only one or two volumes are in memory at a time).

    Inter-patient: volume ``i`` is guided to the views of the next volume with views (cyclic);
    skipped (``inter: None``) with fewer than two volumes or when no other volume has views.
    ``fusion_window_s``, ``fusion_max_sigma2``: the pose node's cycle fusion (:func:`guide`).
    """
    n = len(volumes)
    if n == 0:
        raise GuidanceError(f'dataset {name}: no volumes')
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, desc=f'guidance {name}', unit='volume')
    views: list[dict[str, tuple[np.ndarray, Pose]]] = [{} for _ in range(n)]
    names: list[str] = [''] * n
    if inter and n > 1 and protocol.inter_runs > 0:
        for i, item in enumerate(volumes):
            v = _load(item)
            names[i] = v.name
            views[i] = view_targets(v, protocol.inter_views, sector)
            del v
    results: list[RunResult] = []
    for i, item in enumerate(volumes):
        v = _load(item)
        names[i] = v.name
        specs = intra_specs(v, np.random.default_rng([protocol.seed, i, 0]), protocol, sector)
        if inter and n > 1 and protocol.inter_runs > 0:
            partner = next((j % n for j in range(i + 1, i + n) if views[j % n]), None)
            if partner is not None:
                specs += inter_specs(v, names[partner], views[partner], np.random.default_rng([protocol.seed, i, 1]),
                                     protocol)
        # every run of this volume in lockstep: one estimator call per step for all of them
        results += guide(v, specs, estimator, config, sector=sector, rate_hz=protocol.rate_hz,
                         max_seconds=protocol.max_seconds, stop_on_converged=protocol.stop_on_converged,
                         robot=protocol.robot, fusion_window_s=fusion_window_s,
                         fusion_max_sigma2=fusion_max_sigma2)
        if bar is not None:
            bar.update(1)
        del v
    if bar is not None:
        bar.close()
    return DatasetResult(name=name, volumes=names, results=results, summary=summarize_dataset(results, protocol),
                         source=dict(source or {}))
