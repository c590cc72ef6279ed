"""One dataclass holds every training setting; it is saved (as JSON) with every checkpoint and
into the exported ONNX model, so a model can always say how it was made.

Angles are in degrees in the config (human-edited); code converts to radians at the edge.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from . import TrainingError
from .device import check_device_name

__all__ = ['LOSS_FORMS', 'PRECISIONS', 'RUN_FIELDS', 'TrainConfig', 'parse_seed_range', 'random_style_share']

LOSS_FORMS = ('cauchy', 'chordal', 'geodesic')
PRECISIONS = ('bf16', 'fp16', 'fp32')


#: What a warm start does not take from the model it starts from: where this run writes and reads
#: its cache, how long it runs for, this machine's resources, one patient's adaptation sweep and a teacher.
RUN_FIELDS = ('device', 'distill_phases', 'distill_weight', 'init_from', 'out_dir', 'phantom_cache_dir',
              'stop_at_step', 'sweep_file', 'sweep_holdout', 'sweep_val_every', 'sweep_weight', 'threads',
              'time_budget_s', 'time_limit_s', 'workers')


@dataclass
class TrainConfig:
    # --- run ---
    seed: int = 0
    out_dir: str = 'out/train'
    steps: int = 20000               # optimiser steps in total
    time_limit_s: float = 0.0        # stop (and checkpoint) after this wall time; 0 = no limit
    time_budget_s: float = 0.0       # > 0: the run sets `steps` from its measured step rate so the schedule
                                     # ends inside this much training time, and stops there (budget.py)
    stop_at_step: int = 0            # stop (checkpoint saved) once this step is done; the schedule
                                     # still spans `steps` (0 = run to `steps`). Resume to go on.
    threads: int = 1                 # torch.set_num_threads (1: see docs/training.md, shared CPU)
    device: str = 'auto'             # 'auto' (cuda when torch.cuda.is_available(), else cpu), 'cpu', 'cuda',
                                     # 'cuda:N' (device.py); checkpoints hold CPU tensors either way
    precision: str = 'fp32'          # 'fp32'; 'bf16': the network's forward under autocast bfloat16 (CPU or
                                     # CUDA); 'fp16': CUDA only, autocast float16 and a GradScaler (SVD, loss,
                                     # optimiser and weights float32 in every case)
    workers: int = 1                 # data worker processes (slicing runs there, off this thread)
    log_every: int = 50
    ckpt_every_s: float = 180.0
    init_from: str = ''              # warm start: model + adapters from this checkpoint or an exported
                                     # .onnx (onnx_import.py); fresh optimiser
    distill_weight: float = 0.0      # > 0: the warm start stays, frozen, as a teacher: each member is also pulled
                                     # towards the teacher's member on the clean image of the same slice (the
                                     # patient in the default style, before augmentation), weight x this
    distill_phases: int = 1          # the teacher reads each pose at this many phases spread over the cycle (the
                                     # slice's own first) and teaches their mean: a reading the heartbeat does
                                     # not move (1 = the slice's own phase only)
    # --- data ---
    train_seeds: str = '0-199'       # phantom seeds "A-B" (inclusive) when volumes_dir is empty
    phantom_style: str = ''          # phantom style name or file ('' = the default style); 'random': each
                                     # patient in a scanner style of its own (echoposed_sim.phantom.random_style);
                                     # 'random:P': a share P of the patients, the others in the default style
    volumes_dir: str = ''            # a folder of the user's own volumes (overrides train_seeds)
    phantom_weight: float = 0.0      # with volumes_dir: probability that a step draws a phantom patient of
                                     # train_seeds instead of a volume of the folder (0 = the folder only)
    phantom_frames: int = 5          # frames per cardiac cycle of each phantom patient
    phantom_motion: str = 'default'  # 'default': each seed's drawn motion; 'wide': heart rate, EF, shortening and
                                     # twist drawn wider (echoposed_sim.phantom.wide_motion)
    phantom_cache_dir: str = 'out/cache/phantoms'  # generated patients kept here ('' = none)
    phantom_version: int = 0         # 0 = current generator; N = only cached patients of version N
    cache_volumes: int = 64          # volumes kept in memory per data worker
    volume_reuse: int = 1            # consecutive steps drawing from the same volume
    sweep_file: str = ''             # a prepared adaptation sweep (.npz of model inputs and relative-pose
                                     # labels, echoposed_ros.adapt.finetune.prepare_sweep)
    sweep_weight: float = 0.0        # with sweep_file: probability that a step draws its batch from the sweep
                                     # instead of the volumes (the rest keeps the model's other skills)
    sweep_holdout: float = 0.0       # with sweep_file: share of the sweep's held poses kept out of training; the
                                     # relative-pose error on them picks the checkpoint written to best.pt
    sweep_val_every: int = 100       # steps between two checks on the held-out poses
    # --- image / sector (the model's input geometry, recorded in the ONNX metadata) ---
    input_size: int = 64             # H = W in pixels
    sector_angle_deg: float = 75.0
    sector_depth_mm: float = 150.0   # fan radius D (mm), the slicer default
    # --- pose sampling (docs/method.md section 3) ---
    poses: int = 16                  # pose-time pairs per step (before mirrors)
    tilt_deg: float = 20.0           # probe tilt range about x and about y (+-)
    orbit_deg: float = 20.0          # orbit angle range [0, orbit_deg] about a horizontal axis
    z_start_deg: float = 30.0        # curriculum: probe range about z at step 0 (+-)
    z_ramp_steps: int = 3000         # ... widened linearly to +-180 over these steps
    turn_clusters: int = 0           # > 0: the poses' turns about z in this many clusters (pairs a few
                                     # degrees apart about the beam); 0: independent turns
    cluster_deg: float = 10.0        # half-width of a cluster about its centre (+-)
    phase_pairs: float = 0.0         # share of the poses that repeat another pose of the batch at a new cardiac
                                     # phase (relative pose identity: the pair teaches phase invariance), <= 0.5
    mirrors: bool = True             # add the left-right mirror of every image (a pose) once full range
    # --- augmentation ---
    aug_sector_crop: float = 0.5     # probability of narrowing the sector angle
    aug_sector_min: float = 0.7      # narrowest crop as a fraction of the full sector angle
    aug_grey: float = 0.5            # probability of a random piecewise-linear grey remap
    aug_zoom: float = 0.15           # depth scale drawn from [1 - z, 1 + z]
    aug_resample: float = 0.0        # probability per batch: slice finer, 8-bit quantise, and map onto the
                                     # input with the runtime's fan mapping (as a scanner frame arrives)
    aug_resample_max: float = 2.0    # finest such slice, as a multiple of input_size
    aug_style: float = 0.0           # probability per batch of a random acquisition style (appearance.py: PSF,
                                     # TGC, gain, dynamic range, grey curve, noise, clutter, shadows, dropout)
    # --- model ---
    members: int = 5                 # K
    widths: tuple[int, int, int, int] = (16, 32, 64, 128)  # channels of the 4 stages (2 blocks each)
    stem_stride: int = 2             # stride of the first 3x3 conv
    first_stride: int = 2            # stride of block 1 (blocks 3, 5, 7 always stride 2)
    freeze_bn: bool = False          # batch norm keeps the running statistics it starts with (a fine-tune that
                                     # must not move them towards its new data); scales and shifts still train
    # --- loss ---
    loss: str = 'geodesic'           # 'geodesic' (atan2 form, angle^2), 'chordal' (||.||_F^2) or
                                     # 'cauchy' (c^2 log(1 + angle^2 / c^2), c = loss_scale_deg)
    loss_scale_deg: float = 30.0     # c of the 'cauchy' form: pairs far beyond it weigh little
    w_orbit: float = 50.0
    w_probe: float = 1.0
    w_x: float = 1.0                 # extra weight of pair errors about the pose's own x axis (tilt)
    # --- optimiser ---
    muon_lr: float = 0.02
    adamw_lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    final_lr_frac: float = 0.1       # cosine decay to this fraction of the peak
    muon_for_conv: bool = True       # conv weights kept 2D (C_out, C_in*9) and stepped by Muon
    # --- orchestrator ---
    adapter_decay: float = 0.9       # EMA of the Procrustes sums between refits

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise TrainingError(f'config: unknown field(s) {unknown}; known: {sorted(names)}')
        kw = dict(d)
        if 'widths' in kw:
            kw['widths'] = tuple(int(w) for w in kw['widths'])
        return cls(**kw).validated()

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise TrainingError(f'{path}: cannot read config JSON ({e})') from e
        return cls.from_dict(d)

    def replace(self, **kw) -> TrainConfig:
        return dataclasses.replace(self, **kw).validated()

    def validated(self) -> TrainConfig:
        def bad(name: str, want: str) -> TrainingError:
            return TrainingError(f'config field {name}={getattr(self, name)!r}: expected {want}')
        if self.members < 1:
            raise bad('members', 'at least 1')
        if self.poses < 2:
            raise bad('poses', 'at least 2 pose-time pairs per step')
        if self.input_size < 16 or self.input_size % 16:
            raise bad('input_size', 'a multiple of 16, at least 16')
        if self.precision not in PRECISIONS:
            raise bad('precision', ' or '.join(repr(p) for p in PRECISIONS))
        check_device_name(self.device)
        if self.precision == 'fp16' and self.device == 'cpu':
            raise bad('precision', "'bf16' or 'fp32' on device 'cpu' ('fp16' needs CUDA)")
        if self.loss not in LOSS_FORMS:
            raise bad('loss', ' or '.join(repr(f) for f in LOSS_FORMS))
        if self.w_x <= 0:
            raise bad('w_x', 'a positive weight')
        if self.loss_scale_deg <= 0:
            raise bad('loss_scale_deg', 'a positive angle in degrees')
        if not 0 <= self.turn_clusters <= self.poses:
            raise bad('turn_clusters', f'0 (independent turns) to poses = {self.poses}')
        if not 0 <= self.cluster_deg <= 180:
            raise bad('cluster_deg', 'an angle in [0, 180] degrees')
        if self.stop_at_step < 0:
            raise bad('stop_at_step', '0 (run to steps) or a step number')
        if not 0 <= self.aug_resample <= 1:
            raise bad('aug_resample', 'a probability in [0, 1]')
        if self.phantom_motion not in ('default', 'wide'):
            raise bad('phantom_motion', "'default' or 'wide'")
        random_style_share(self.phantom_style)     # 'random:P' with a bad P raises, naming the field
        if not 0 <= self.phase_pairs <= 0.5:
            raise bad('phase_pairs', 'a share in [0, 0.5] (each repeat needs a pose of its own to repeat)')
        if not 0 <= self.aug_style <= 1:
            raise bad('aug_style', 'a probability in [0, 1]')
        if self.aug_resample_max < 1:
            raise bad('aug_resample_max', 'at least 1 (a multiple of input_size)')
        if len(self.widths) != 4 or min(self.widths) < 1:
            raise bad('widths', '4 positive channel counts')
        if not 0 < self.sector_angle_deg < 180:
            raise bad('sector_angle_deg', 'in (0, 180)')
        if self.time_budget_s < 0:
            raise bad('time_budget_s', 'seconds of training (0 = no budget)')
        if not 0 <= self.phantom_weight <= 1:
            raise bad('phantom_weight', 'a probability in [0, 1]')
        if self.phantom_weight > 0 and not self.volumes_dir:
            raise bad('phantom_weight', '0 without volumes_dir (every step draws a phantom then)')
        if not 0 <= self.sweep_weight <= 1:
            raise bad('sweep_weight', 'a probability in [0, 1]')
        if self.sweep_weight > 0 and not self.sweep_file:
            raise bad('sweep_weight', '0 without sweep_file')
        if not 0 <= self.sweep_holdout <= 0.5:
            raise bad('sweep_holdout', 'a share of the held poses in [0, 0.5]')
        if self.sweep_holdout > 0 and not self.sweep_file:
            raise bad('sweep_holdout', '0 without sweep_file')
        every = self.sweep_val_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise bad('sweep_val_every', 'a number of steps >= 1')
        if self.distill_weight < 0:
            raise bad('distill_weight', 'a weight >= 0 (0 = no teacher)')
        phases = self.distill_phases
        if isinstance(phases, bool) or not isinstance(phases, int) or not 1 <= phases <= 8:
            raise bad('distill_phases', 'a whole number of phases in [1, 8]')
        if self.distill_weight > 0 and not self.init_from:
            raise bad('distill_weight', '0 without init_from (the teacher is the warm start)')
        if not self.volumes_dir or self.phantom_weight > 0:
            parse_seed_range(self.train_seeds)
        return self


def parse_seed_range(text: str) -> list[int]:
    """'A-B' (inclusive), 'A' or 'A,B,C-D' -> sorted list of seeds."""
    seeds: set[int] = set()
    try:
        for part in str(text).split(','):
            part = part.strip()
            if '-' in part[1:]:
                a, b = part.split('-', 1) if not part.startswith('-') else (part, '')
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds.update(range(lo, hi + 1))
            elif part:
                seeds.add(int(part))
    except ValueError:
        raise TrainingError(f'seed range {text!r}: expected "A-B", "A" or a comma list of those') from None
    if not seeds:
        raise TrainingError(f'seed range {text!r}: no seeds')
    return sorted(seeds)


def random_style_share(style: str) -> float | None:
    """The share of phantom seeds drawn in a scanner style of their own: 1 for ``'random'``, P for
    ``'random:P'`` (0 < P <= 1; the other seeds in the default style), None for any other style."""
    if style == 'random':
        return 1.0
    if not style.startswith('random:'):
        return None
    try:
        share = float(style.split(':', 1)[1])
    except ValueError:
        share = float('nan')
    if not 0 < share <= 1:
        raise TrainingError(f"phantom_style {style!r}: expected 'random' or 'random:P' with a share P in (0, 1]")
    return share
