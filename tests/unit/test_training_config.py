"""The one-file training config."""
from __future__ import annotations

import json

import pytest

from echoposed_ros.training import TrainingError
from echoposed_ros.training.config import TrainConfig, parse_seed_range


def test_json_round_trip_through_a_file(tmp_path):
    cfg = TrainConfig(members=3, widths=(8, 8, 16, 16), train_seeds='5-9', w_orbit=10.0)
    path = tmp_path / 'c.json'
    path.write_text(cfg.to_json())
    assert TrainConfig.load(path) == cfg


def test_unknown_and_bad_fields_are_named(tmp_path):
    path = tmp_path / 'c.json'
    path.write_text(json.dumps({'membrs': 3}))
    with pytest.raises(TrainingError, match='membrs'):
        TrainConfig.load(path)
    with pytest.raises(TrainingError, match='input_size'):
        TrainConfig(input_size=50).validated()
    with pytest.raises(TrainingError, match='loss'):
        TrainConfig(loss='l1').validated()
    with pytest.raises(TrainingError, match='nope'):
        TrainConfig(train_seeds='nope').validated()
    with pytest.raises(TrainingError, match='cannot read'):
        TrainConfig.load(tmp_path / 'missing.json')


def test_seed_ranges():
    assert parse_seed_range('0-3') == [0, 1, 2, 3]
    assert parse_seed_range('7') == [7]
    assert parse_seed_range('1,4-5') == [1, 4, 5]
    with pytest.raises(TrainingError):
        parse_seed_range('5-2')
