"""``echoposed train``: train the Echo-POSED ensemble (docs/method.md sections 3-4) on phantom patients or
a folder of your own 3D/3D+t volumes. Resumes from ``OUT/last.pt`` when it exists.

A warm start (``--init-from MODEL``: a checkpoint or an exported ``.onnx``) takes the model's own
training config, less the run's own fields (``RUN_FIELDS``: output, cache, time limits, device,
threads, workers), and the ``--config`` file and the flags override it; ``--no-inherit`` starts from the
defaults instead. ``--print-config`` prints the resolved config (JSON, stdout) and, for a warm
start, the fields where it differs from the model's (stderr). ``--device`` picks where the run
computes (docs/training.md, GPU); ``--workers auto`` (the default when neither a flag nor the
``--config`` file names the workers) is resolved here, once, into the config: 1 on CPU, the free
cores on a GPU (``echoposed_ros.training.device.auto_workers``). ``--time-budget 30m`` sizes the run by time
(``time_budget_s``: the steps are set from the measured step rate, budget.py); ``--mix
volumes=W,phantoms=W`` trains on the ``--volumes`` folder and the ``--seeds`` phantoms together
(``phantom_weight``: the phantoms' share of the steps).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ['add_arguments', 'run']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--config', help='JSON config file (fields of TrainConfig); flags below override it')
    parser.add_argument('--out', help='output folder (checkpoints, train.log, config.json)')
    parser.add_argument('--seeds', help='phantom patient seeds, "A-B"')
    parser.add_argument('--style', help="phantom acquisition style (name in sim/styles or YAML path; 'random': a "
                                        'scanner style of its own per patient)')
    parser.add_argument('--volumes', help='folder of volume files to train on instead of phantoms')
    parser.add_argument('--mix', metavar='volumes=W,phantoms=W',
                        help='with --volumes, also draw phantom patients (--seeds): each step draws its volume '
                             'from a source with these relative weights (e.g. volumes=0.5,phantoms=0.5)')
    parser.add_argument('--steps', type=int, help='optimiser steps in total')
    parser.add_argument('--minutes', type=float, help='wall-time limit (checkpoints and stops)')
    parser.add_argument('--time-budget', metavar='DURATION',
                        help='size the run by time (90s, 30m, 2h; a bare number is minutes): the steps are set '
                             'from the step rate measured over the first steps so that the learning-rate '
                             'schedule ends inside the budget, which also stops the run')
    parser.add_argument('--members', type=int, help='ensemble size K')
    parser.add_argument('--seed', type=int, help='random seed')
    parser.add_argument('--threads', type=int, help='torch threads')
    parser.add_argument('--device', help="'auto' (cuda when available, else cpu; the default), 'cpu', 'cuda' or "
                                         "'cuda:N'; under torchrun each process takes cuda:LOCAL_RANK")
    parser.add_argument('--workers', type=_workers,
                        help="data worker processes, or 'auto' (the default when no config names it): 1 on "
                             'CPU, the free cores (at most 8) on a GPU')
    parser.add_argument('--set', nargs='*', action='extend', default=[], metavar='FIELD=JSON',
                        help='any other config field, value as JSON (e.g. w_orbit=50 widths=[16,32,64,128])')
    parser.add_argument('--init-from', metavar='MODEL',
                        help='warm start from a checkpoint (.pt) or an exported model (.onnx): its weights, '
                             'adapters and training config (flags and --config override the config)')
    parser.add_argument('--distill', type=float, metavar='WEIGHT',
                        help='with --init-from: keep the warm start as a frozen teacher that reads every slice '
                             'in the default style, before augmentation, and pull each member towards it with '
                             'this weight (1 = as much as the pairwise loss): new styles are learnt without '
                             'losing the default one')
    parser.add_argument('--no-inherit', action='store_true',
                        help="with a warm start, begin from the default config instead of the model's own")
    parser.add_argument('--fresh', action='store_true', help='do not resume from OUT/last.pt')
    parser.add_argument('--print-config', action='store_true', help='print the resolved config and exit')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


def _workers(text: str) -> int | str:
    """--workers: 'auto' or a count of at least 0."""
    if text == 'auto':
        return text
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 'auto' or a number of worker processes (0 = inline)")
    return n


def _phantom_weight(text: str) -> float:
    """--mix 'volumes=W,phantoms=W' (relative weights, either may be left out as 0) -> the
    probability that a step draws a phantom (TrainConfig.phantom_weight)."""
    from echoposed_ros.training import TrainingError
    weights = {'volumes': 0.0, 'phantoms': 0.0}
    for part in filter(None, (p.strip() for p in str(text).split(','))):
        name, _, value = part.partition('=')
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if name.strip() not in weights or not weight >= 0:
            raise TrainingError(f'--mix {text!r}: expected volumes=W,phantoms=W with weights of at least 0')
        weights[name.strip()] = weight
    total = weights['volumes'] + weights['phantoms']
    if not total > 0:
        raise TrainingError(f'--mix {text!r}: the weights sum to 0; give at least one positive weight')
    return weights['phantoms'] / total


def _resolve(args: argparse.Namespace):
    """-> (the run's TrainConfig, the warm start's own config or None)."""
    from echoposed_ros.training import TrainingError
    from echoposed_ros.training.checkpoint import read_config
    from echoposed_ros.training.config import RUN_FIELDS, TrainConfig
    from_file = {}
    if args.config:  # the fields the file names (TrainConfig.load checks them first)
        TrainConfig.load(args.config)
        from_file = json.loads(Path(args.config).read_text())
    kw = {}
    for flag, field in (('out', 'out_dir'), ('seeds', 'train_seeds'), ('style', 'phantom_style'),
                        ('volumes', 'volumes_dir'), ('steps', 'steps'), ('members', 'members'),
                        ('seed', 'seed'), ('threads', 'threads'), ('workers', 'workers'),
                        ('init_from', 'init_from'), ('device', 'device'), ('distill', 'distill_weight')):
        value = getattr(args, flag)
        if value is not None:
            kw[field] = value
    if args.minutes is not None:
        kw['time_limit_s'] = 60.0 * args.minutes
    if args.time_budget is not None:
        if args.steps is not None or args.minutes is not None:
            raise TrainingError('--time-budget sets the steps and the time limit: give it without --steps '
                                'and --minutes')
        from echoposed_ros.training.budget import parse_duration
        kw['time_budget_s'] = parse_duration(args.time_budget)
    if args.mix is not None:
        kw['phantom_weight'] = _phantom_weight(args.mix)
    for item in args.set:
        if '=' not in item:
            raise TrainingError(f'--set {item!r}: expected FIELD=JSON')
        key, value = item.split('=', 1)
        try:
            kw[key] = json.loads(value)
        except json.JSONDecodeError:
            kw[key] = value
    given = {**from_file, **kw}
    workers_auto = given.get('workers', 'auto') == 'auto'
    if workers_auto:
        given.pop('workers', None)
    init_from = given.get('init_from', '')
    source = read_config(init_from) if init_from and not args.no_inherit else None
    inherited = ({k: v for k, v in json.loads(source.to_json()).items() if k not in RUN_FIELDS}
                 if source is not None else {})
    cfg = TrainConfig.from_dict({**json.loads(TrainConfig().to_json()), **inherited, **given})
    from echoposed_ros.training.device import auto_workers, check_precision, launch_env, resolve_device
    local_rank, local_world = launch_env()
    device = resolve_device(cfg.device, local_rank, local_world)   # CUDA asked for and absent: fails here
    check_precision(cfg.precision, device)
    if workers_auto:  # resolved once, here, and written into the run's config
        cfg = cfg.replace(workers=auto_workers(device.type, cfg.threads, local_world))
        if device.type != 'cpu':
            print(f'echoposed train: --workers auto: {cfg.workers} data workers beside {cfg.threads} '
                  f'thread(s) on {device}', file=sys.stderr)
    return cfg, source


def _differences(source, cfg) -> list[str]:
    """'field: model X, this run Y' for every field (RUN_FIELDS aside) where ``cfg`` differs."""
    from echoposed_ros.training.config import RUN_FIELDS
    a, b = json.loads(source.to_json()), json.loads(cfg.to_json())
    return [f'{k}: model {a[k]!r}, this run {b[k]!r}' for k in sorted(a) if k not in RUN_FIELDS and a[k] != b[k]]


def run(args: argparse.Namespace) -> int:
    from echoposed_ros.training import TrainingError, TrainingStopped
    try:
        cfg, source = _resolve(args)
        if source is not None:
            changed = _differences(source, cfg)
            print(f'echoposed train: warm start from {cfg.init_from}: its training config, '
                  + ('except ' + '; '.join(changed) if changed else 'unchanged'), file=sys.stderr)
        if args.print_config:
            print(json.dumps(json.loads(cfg.to_json()), indent=2))
            return 0
        from echoposed_ros.training.train import train
        path = train(cfg, resume=not args.fresh, progress=not args.quiet)
    except TrainingStopped as e:  # checkpointed; the shell's convention for a signal's exit status
        print(f'echoposed train: {e}')
        return 128 + e.signum
    except TrainingError as e:
        print(f'echoposed train: {e}')
        return 2
    print(f'checkpoint: {path}')
    return 0
