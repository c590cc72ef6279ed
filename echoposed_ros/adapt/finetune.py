"""Fine-tune the ensemble on one patient's sweep, mixed with phantom batches, and export it (needs torch).

1. :func:`prepare_sweep`: the recording's frames through the pose node's own preprocessing (fan
   detection and mapping onto the model input, ``config/pose.yaml``), the arm's poses as labels
   (:mod:`.labels`), the holds; one ``.npz`` the training data reads (``TrainConfig.sweep_file``).
2. :func:`adapt_config`: the model's own training config (its metadata), warm-started from it,
   with a sweep share of the steps (``sweep_weight``), phantoms for the rest, a time budget and a
   learning rate for a short run.
3. :func:`adapt_model`: train, blend the weights towards the model's (``blend``), export with the frame
   pinned on phantom batches, write a JSON record.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import AdaptError
from .recording import Recording

__all__ = ['AdaptSettings', 'adapt_config', 'adapt_model', 'export_adapted', 'prepare_sweep']


@dataclass(frozen=True)
class AdaptSettings:
    """budget_s: training seconds (the schedule ends inside them); sweep_weight: share of steps on the
    sweep; phantom_seeds: phantom patients of the other steps ('' = the model's own); muon_lr: peak
    learning rate (AdamW at a tenth); workers, threads, device: as ``echoposed train``; steps > 0: that
    many steps instead of a time budget; freeze_bn: batch norm keeps the model's running statistics;
    holdout: share of the sweep's holds kept out of training, whose relative-pose error picks the exported
    checkpoint (0: the last one); check_every: steps between two such checks; distill: weight of the model
    itself as a frozen teacher on the phantom steps (``TrainConfig.distill_weight``; 0 = none): it holds
    what the phantoms taught while the sweep's steps learn the patient; blend: the exported weights are
    ``blend * fine-tuned + (1 - blend) * model`` (:func:`~echoposed_ros.training.blend.blend_checkpoint`;
    1 = the fine-tuned weights alone): less of the patient, less forgotten elsewhere (0.5: docs/adaptation.md)."""

    budget_s: float = 300.0
    sweep_weight: float = 0.5
    phantom_seeds: str = '0-19'
    muon_lr: float = 0.001
    warmup_steps: int = 50
    workers: int = 1
    threads: int = 1
    device: str = 'auto'
    seed: int = 0
    steps: int = 0
    freeze_bn: bool = True
    holdout: float = 0.25
    check_every: int = 100
    distill: float = 0.0
    blend: float = 0.5

    def __post_init__(self) -> None:
        if not self.budget_s > 0:
            raise AdaptError(f'adaptation budget {self.budget_s!r} s; expected > 0 s')
        if not 0 < self.sweep_weight <= 1:
            raise AdaptError(f'sweep_weight {self.sweep_weight!r}; expected a share in (0, 1]')
        if not self.muon_lr > 0:
            raise AdaptError(f'muon_lr {self.muon_lr!r}; expected > 0')
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise AdaptError(f'steps {self.steps!r}; expected a whole number >= 0 (0: the time budget)')
        if not 0 <= self.holdout <= 0.5:
            raise AdaptError(f'holdout {self.holdout!r}; expected a share of the sweep holds in [0, 0.5]')
        if not 0 <= self.distill < float('inf'):
            raise AdaptError(f'distill {self.distill!r}; expected a weight >= 0 (0: no teacher)')
        if not 0 <= self.blend <= 1:
            raise AdaptError(f'blend {self.blend!r}; expected a share in [0, 1] of the fine-tuned weights '
                             '(1: them alone)')


def prepare_sweep(recording: Recording, model: str | Path, out: str | Path, pose_config: str | Path | None = None
                  ) -> dict[str, Any]:
    """Write the prepared sweep of ``recording`` for ``model`` to ``out``; returns a summary (frames, holds,
    ranges of the labels in deg)."""
    from echoposed_ros.config.pose import pose_config_from_yaml
    from echoposed_ros.estimator import Estimator
    from echoposed_ros.geometry import so3

    kwargs = pose_config_from_yaml(pose_config).estimator_kwargs()
    kwargs['mirror'] = False
    est = Estimator(model, **kwargs)
    images = np.stack([est.prepare(im, 'mono8', f'sweep frame {i}')[0] for i, im in enumerate(recording.images)])
    orbit, probe = recording.labels()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, 'wb') as f:
        np.savez(f, images=images.astype(np.float32), orbit=orbit, probe=probe, hold=recording.hold)
    turn = np.degrees(np.arctan2(probe[:, 1, 0], probe[:, 0, 0]))
    return {'frames': len(images), 'holds': int(recording.hold.max() + 1),
            'held_share': float((recording.hold >= 0).mean()),
            'turn_deg': [float(turn.min()), float(turn.max())],
            'orbit_deg_max': float(np.degrees(so3.angle(orbit)).max()),
            'probe_deg_max': float(np.degrees(so3.angle(probe)).max())}


def adapt_config(model: str | Path, sweep_file: str | Path, out_dir: str | Path, settings: AdaptSettings,
                 cache_dir: str = 'out/cache/phantoms'):
    """The fine-tune's TrainConfig: the model's own training config (``RUN_FIELDS`` aside), warm-started
    from ``model``, with the sweep and the settings."""
    from echoposed_ros.training.checkpoint import read_config
    from echoposed_ros.training.config import RUN_FIELDS, TrainConfig

    base = read_config(str(model))
    inherited = {k: v for k, v in json.loads(base.to_json()).items() if k not in RUN_FIELDS}
    cfg = TrainConfig.from_dict({**json.loads(TrainConfig().to_json()), **inherited})
    seeds = settings.phantom_seeds or cfg.train_seeds
    return cfg.replace(init_from=str(model), out_dir=str(out_dir), sweep_file=str(sweep_file),
                       sweep_weight=settings.sweep_weight, train_seeds=seeds, volumes_dir='', phantom_weight=0.0,
                       time_budget_s=0.0 if settings.steps else settings.budget_s,
                       steps=settings.steps or 10**6, muon_lr=settings.muon_lr,
                       adamw_lr=settings.muon_lr / 10, warmup_steps=settings.warmup_steps, z_ramp_steps=0,
                       workers=settings.workers, threads=settings.threads, device=settings.device,
                       seed=settings.seed, phantom_cache_dir=cache_dir, ckpt_every_s=1e9,
                       freeze_bn=settings.freeze_bn, sweep_holdout=settings.holdout,
                       sweep_val_every=settings.check_every, distill_weight=settings.distill)


def export_adapted(checkpoint: str | Path, model: str | Path, out_dir: str | Path, blend: float, *, name: str = '',
                   factory=None) -> Path:
    """``out_dir/adapted.onnx`` from the fine-tune's kept ``checkpoint``: its weights blended towards ``model``'s
    (``blend`` < 1: ``out_dir/blended.pt``), exported with the frame pinned; returns the ONNX path."""
    from echoposed_ros.training.export import export_onnx
    out = Path(out_dir)
    ck = Path(checkpoint)
    if blend < 1:
        from echoposed_ros.training.blend import blend_checkpoint
        ck = blend_checkpoint(ck, model, blend, out / 'blended.pt')
    return export_onnx(ck, out / 'adapted.onnx', model_name=name or f'{Path(model).stem}_adapted', factory=factory)


def adapt_model(recording: Recording, model: str | Path, out_dir: str | Path, settings: AdaptSettings | None = None,
                *, progress: bool = False, cache_dir: str = 'out/cache/phantoms', name: str = '',
                factory=None) -> Path:
    """Adapt ``model`` to the patient of ``recording``: writes into ``out_dir`` the prepared sweep
    (``sweep.npz``), the run (``last.pt``, ``best.pt`` with a hold-out, ``train.log``, ``blended.pt`` with
    ``blend`` < 1), the adapted model (``adapted.onnx``: the checkpoint best on the held-out holds, blended)
    and ``adapt.json`` (settings, sweep summary, training steps and seconds, ``sweep_check``); returns the
    model's path.
    factory: optional ``key -> Volume`` instead of phantom patients (tests)."""
    from echoposed_ros.training.train import train

    settings = settings or AdaptSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    summary = prepare_sweep(recording, model, out / 'sweep.npz')
    cfg = adapt_config(model, out / 'sweep.npz', out, settings, cache_dir)
    t1 = time.time()
    ck = train(cfg, resume=False, progress=progress, factory=factory)
    t2 = time.time()
    from echoposed_ros.training.checkpoint import read_checkpoint
    steps = int(read_checkpoint(ck)[1]['step'])
    check = None
    if (out / 'best.pt').exists() and settings.holdout > 0:
        ck = out / 'best.pt'
        check = read_checkpoint(ck)[1]['sweep_check']
    onnx_path = export_adapted(ck, model, out, settings.blend, name=name, factory=factory)
    record = {'model': str(model), 'adapted': str(onnx_path), 'settings': settings.__dict__, 'sweep': summary,
              'recording': recording.meta, 'steps': steps, 'sweep_check': check, 'prepare_s': t1 - t0,
              'train_s': t2 - t1, 'export_s': time.time() - t2}
    (out / 'adapt.json').write_text(json.dumps(record, indent=2))
    return onnx_path
