"""Operator cues in sonographer words, and target handling (view tables, quaternions)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from echoposed_ros.geometry import gauge_fix, rot_x, rot_y, rot_z, so3_exp
from echoposed_ros.policy import (
    STANDARD_VIEWS,
    Cue,
    PolicyError,
    TargetKind,
    cue_text,
    load_view_table,
    operator_cue,
    target_from_quaternions,
    view_name,
    write_view_table,
)

I = np.eye(3)  # noqa: E741 (the identity rotation)
BASE = gauge_fix((rot_x(0.15), rot_z(0.7) @ rot_x(-0.1)))


def turned(delta):
    """The base pose with the probe turned by ``delta`` in its own frame (right multiplication)."""
    return (BASE.orbit, BASE.probe @ delta)


@pytest.mark.parametrize(('deg', 'word'), [(20, 'clockwise'), (-35, 'counterclockwise')])
def test_pure_turn_about_the_beam_is_a_rotate_cue(deg, word):
    cue = operator_cue(BASE, turned(rot_z(math.radians(deg))))
    assert cue.rotate == pytest.approx(math.radians(deg))
    assert abs(cue.rock) < 1e-9 and abs(cue.tilt) < 1e-9 and cue.slide < 1e-9
    assert cue_text(cue) == f'rotate {word} {abs(deg)} deg'


def test_in_plane_turn_is_rocking_toward_or_away_from_the_marker():
    # About the elevation axis y: the beam swings in the image plane toward +x (the marker side).
    cue = operator_cue(BASE, turned(rot_y(math.radians(8))))
    assert cue_text(cue) == 'rock toward the marker 8 deg'
    beam = rot_y(math.radians(8)) @ np.array([0, 0, 1.0])
    assert beam[0] > 0  # toward +x
    assert cue_text(operator_cue(BASE, turned(rot_y(math.radians(-6))))) == 'rock away from the marker 6 deg'


def test_out_of_plane_turn_is_tilting():
    # About the lateral axis x: the beam fans through the elevation direction (out of plane).
    assert cue_text(operator_cue(BASE, turned(rot_x(math.radians(-5))))) == 'tilt up 5 deg'
    assert cue_text(operator_cue(BASE, turned(rot_x(math.radians(12))))) == 'tilt down 12 deg'


def test_orbit_motion_is_a_slide_with_its_direction_in_the_probe_frame():
    # From (I, I): orbit about +y moves u toward +x, so the apex (o = c - r u) slides toward -x.
    cue = operator_cue((I, I), (rot_y(math.radians(10)), I))
    assert cue.slide == pytest.approx(math.radians(10))
    assert cue.slide_direction == pytest.approx((-1.0, 0.0))
    assert cue_text(cue) == 'slide away from the marker 10 deg'  # no turn left after a pure slide
    assert cue_text(operator_cue((I, I), (rot_x(math.radians(10)), I))) == 'slide up 10 deg'
    diag = so3_exp(np.array([1.0, -1.0, 0.0]) / math.sqrt(2) * math.radians(9))
    assert cue_text(operator_cue((I, I), (diag, I))) == 'slide toward the marker and up 9 deg'
    # The direction is read in the probe frame: with the probe turned 90 deg about the beam, the
    # same orbit motion is a slide along the elevation axis.
    assert cue_text(operator_cue((I, rot_z(math.pi / 2)), (rot_y(math.radians(10)), rot_z(math.pi / 2)))) \
        == 'slide up 10 deg'


def test_combined_cue_orders_parts_and_drops_small_ones():
    target = (BASE.orbit @ rot_y(math.radians(6)), BASE.probe @ rot_z(math.radians(30)))
    text = cue_text(operator_cue(BASE, target))
    assert text.startswith('slide ') and '; rotate clockwise' in text
    assert cue_text(Cue(0.001, (1.0, 0.0), 0.002, -0.003, 0.0)) == 'hold still'


def test_cue_does_not_depend_on_the_estimates_world_rotation():
    rng = np.random.default_rng(4)
    A = so3_exp(rng.normal(size=3))
    target = gauge_fix((BASE.orbit @ rot_x(0.2), BASE.probe @ so3_exp([0.1, -0.2, 0.9])))
    c1 = operator_cue(BASE, target)
    c2 = operator_cue(gauge_fix((A @ BASE.orbit, BASE.probe)), gauge_fix((A @ target.orbit, target.probe)))
    for a, b in [(c1.slide, c2.slide), (c1.rotate, c2.rotate), (c1.rock, c2.rock), (c1.tilt, c2.tilt)]:
        assert a == pytest.approx(b, abs=1e-9)
    assert c1.slide_direction == pytest.approx(c2.slide_direction, abs=1e-9)


# --- targets ------------------------------------------------------------------------------------

def test_view_names_are_case_insensitive_and_checked():
    assert view_name(' a4c ') == 'A4C'
    assert set(STANDARD_VIEWS) == {'A2C', 'A3C', 'A4C'}
    with pytest.raises(PolicyError, match="'PLAX'.*A2C, A3C, A4C"):
        view_name('PLAX')


def test_view_table_round_trips_through_a_file(tmp_path):
    poses = {'A4C': (rot_x(0.1), rot_z(0.5)), 'a2c': (rot_y(-0.1) @ rot_z(0.3), rot_z(1.6))}
    path = write_view_table(tmp_path / 'views.yaml', 'model_k5', poses)
    table = load_view_table(path)
    assert table.frame == 'model_k5' and sorted(table.views) == ['A2C', 'A4C']
    t = table.target('a2c')
    expected = gauge_fix(poses['a2c'])
    np.testing.assert_allclose(t.pose.orbit, expected.orbit, atol=1e-12)
    np.testing.assert_allclose(t.pose.probe, expected.probe, atol=1e-12)
    assert (t.kind, t.frame, t.name) == (TargetKind.VIEW, 'model_k5', 'A2C')
    with pytest.raises(PolicyError, match=r"'A3C'.*views.yaml.*A2C, A4C"):
        table.target('A3C')


@pytest.mark.parametrize(('text', 'words'), [
    ('views: {A4C: {orbit: [0, 0, 0, 1]}}', 'view A4C: expected {orbit'),
    ('views: {A5C: {orbit: [0, 0, 0, 1], probe: [0, 0, 0, 1]}}', "'A5C'"),
    ('views: {A4C: {orbit: [0, 0, 0, 3], probe: [0, 0, 0, 1]}}', 'norm'),
    ('views: {A4C: {orbit: [0, 0, 1], probe: [0, 0, 0, 1]}}', 'shape'),
    ('frame: heart\nview: {}', 'unknown key'),
    ('[1, 2', 'not valid YAML'),
    ('- 1', 'expected a mapping'),
])
def test_bad_view_tables_name_the_file_and_entry(tmp_path, text, words):
    path = tmp_path / 'bad.yaml'
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_view_table(path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_missing_view_table_is_a_clear_error(tmp_path):
    with pytest.raises(PolicyError, match='cannot read the view table'):
        load_view_table(tmp_path / 'nope.yaml')


def test_target_from_quaternions_is_in_canonical_gauge():
    q_twisted = [0.0, 0.0, math.sin(0.4), math.cos(0.4)]  # R_v = Rz(0.8): all twist
    t = target_from_quaternions(q_twisted, [0, 0, 0, 1], 'pose', TargetKind.POSE)
    np.testing.assert_allclose(t.pose.orbit, I, atol=1e-12)
    np.testing.assert_allclose(t.pose.probe, rot_z(0.8), atol=1e-12)
    with pytest.raises(PolicyError, match='orbit'):
        target_from_quaternions([np.nan, 0, 0, 1], [0, 0, 0, 1], 'pose', TargetKind.POSE)
