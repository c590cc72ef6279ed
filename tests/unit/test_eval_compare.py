"""``echoposed eval compare``: two guidance evaluations of the same draws, paired run by run."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binomtest

from echoposed_ros.cli import main
from echoposed_ros.eval.guidance import GuidanceError, compare_evaluations, comparison_json, comparison_text

PROTOCOL = {'seed': 0, 'runs': 5, 'rate_hz': 10.0, 'max_seconds': 45.0, 'orbit_max_deg': 20.0,
            'tilt_max_deg': 20.0, 'turn_max_deg': 180.0, 'target_cine': True, 'inter_runs': 1}


def _doc(errors: dict[tuple[str, str, int], float], protocol=None, dataset='phantom 1-2') -> dict:
    """An evaluation JSON with one run per ``(volume, mode, index): final error (deg)``."""
    table = [{'volume': v, 'mode': m, 'view': 'A4C' if m == 'inter' else '', 'target_volume': v, 'index': i,
              'final_error_deg': e, 'final_state': 'converged' if e is not None and e <= 5 else 'mismatch',
              'time_to_view_s': 10.0 + e if e is not None and e <= 5 else None}   # never converged: null
             for (v, m, i), e in errors.items()]
    return {'protocol': dict(PROTOCOL if protocol is None else protocol),
            'datasets': {dataset: {'run_table': table}}}


def _errors(static, dynamic, inter=1.0):
    """Two volumes x 5 runs per mode; ``static`` / ``dynamic``: 10 final errors each (deg), volume by volume."""
    out = {}
    for mode, values in (('static', static), ('dynamic', dynamic)):
        for k, e in enumerate(values):
            out[(f'phantom:{1 + k // 5}', mode, k % 5)] = e
    for v in ('phantom:1', 'phantom:2'):
        out[(v, 'inter', 0)] = inter
    return out


BASE_STATIC = [0.3, 8.0, 12.0, 0.5, 6.0, 0.2, 0.4, 0.1, 4.9, 0.6]
NEW_STATIC = [0.2, 0.4, 1.0, 0.5, 6.5, 0.3, 0.4, 0.1, 5.1, 2.0]   # rescued 2 (8 -> 0.4, 12 -> 1), lost 1 (4.9 -> 5.1)
DYNAMIC = [1.0] * 9 + [30.0]


def test_runs_pair_and_flips_are_counted_with_the_sign_test():
    c = compare_evaluations(_doc(_errors(BASE_STATIC, DYNAMIC)), _doc(_errors(NEW_STATIC, DYNAMIC, inter=90.0)))
    assert [(x.dataset, x.mode) for x in c] == [('phantom 1-2', 'static'), ('phantom 1-2', 'dynamic')]  # no inter
    s, d = c
    assert s.runs == 10 and s.unscored == 0
    assert (s.base_share, s.new_share) == (pytest.approx(0.7), pytest.approx(0.8))
    assert [(f.volume, f.index, f.base_deg, f.new_deg) for f in s.rescued] == [('phantom:1', 1, 8.0, 0.4),
                                                                              ('phantom:1', 2, 12.0, 1.0)]
    assert [(f.volume, f.index, f.new_state) for f in s.lost] == [('phantom:2', 3, 'mismatch')]
    assert s.sign_test_p == pytest.approx(binomtest(2, 3, 0.5).pvalue)
    assert s.mean_diff_deg == pytest.approx(sum(NEW_STATIC) / 10 - sum(BASE_STATIC) / 10)
    # time to view: a run that never converged counts as the protocol's 45 s
    def ttv(errors):
        return float(np.median([10.0 + e if e <= 5 else PROTOCOL['max_seconds'] for e in errors]))
    assert (s.base_time_to_view_s, s.new_time_to_view_s) == (pytest.approx(ttv(BASE_STATIC)),
                                                            pytest.approx(ttv(NEW_STATIC)))
    tlo, thi = s.time_to_view_diff_ci95_s
    assert tlo <= thi and d.time_to_view_diff_ci95_s == (0.0, 0.0)
    lo, hi = s.share_diff_ci95
    assert lo <= 0.1 <= hi and lo < 0 < hi      # two volumes that disagree: the interval spans no change
    # nothing changed: no flip, p = 1, a zero-width interval at 0
    assert d.rescued == d.lost == () and d.sign_test_p == 1.0 and d.share_diff_ci95 == (0.0, 0.0)
    assert d.mean_diff_deg == 0.0 and d.base_share == d.new_share == 0.9


def test_a_change_that_helps_every_volume_has_an_interval_above_zero():
    base = [9.0, 0.1, 0.1, 0.1, 0.1] * 2
    new = [0.5, 0.1, 0.1, 0.1, 0.1] * 2
    (s, _) = compare_evaluations(_doc(_errors(base, DYNAMIC)), _doc(_errors(new, DYNAMIC)))
    assert len(s.rescued) == 2 and not s.lost
    assert s.share_diff_ci95 == (pytest.approx(0.2), pytest.approx(0.2))
    assert s.mean_diff_ci95_deg[1] < 0


def test_the_tolerance_decides_what_flips():
    base, new = [4.0] + [0.1] * 9, [6.0] + [0.1] * 9
    at5 = compare_evaluations(_doc(_errors(base, DYNAMIC)), _doc(_errors(new, DYNAMIC)))[0]
    at10 = compare_evaluations(_doc(_errors(base, DYNAMIC)), _doc(_errors(new, DYNAMIC)), tolerance_deg=10.0)[0]
    assert len(at5.lost) == 1 and not at10.lost and at10.new_share == 1.0
    with pytest.raises(GuidanceError, match='tolerance'):
        compare_evaluations(_doc(_errors(base, DYNAMIC)), _doc(_errors(new, DYNAMIC)), tolerance_deg=0.0)


def test_runs_without_a_final_error_are_left_out_and_counted():
    base = _errors(BASE_STATIC, DYNAMIC)
    new = _errors(NEW_STATIC, DYNAMIC)
    new[('phantom:1', 'static', 1)] = None     # JSON null: unknown
    s = compare_evaluations(_doc(base), _doc(new))[0]
    assert s.runs == 9 and s.unscored == 1 and len(s.rescued) == 1


def test_evaluations_that_do_not_pair_are_refused_naming_what_differs():
    base = _doc(_errors(BASE_STATIC, DYNAMIC))
    with pytest.raises(GuidanceError, match=r'protocol\.seed differs: 0 in a\.json, 3 in b\.json'):
        compare_evaluations(base, _doc(_errors(NEW_STATIC, DYNAMIC), protocol={**PROTOCOL, 'seed': 3}),
                            names=('a.json', 'b.json'))
    fewer = _errors(NEW_STATIC, DYNAMIC)
    del fewer[('phantom:2', 'dynamic', 4)]
    with pytest.raises(GuidanceError, match=r"no twin in b\.json, the first \{'volume': 'phantom:2', 'mode': "
                                            r"'dynamic'"):
        compare_evaluations(base, _doc(fewer), names=('a.json', 'b.json'))
    with pytest.raises(GuidanceError, match='datasets differ'):
        compare_evaluations(base, _doc(_errors(NEW_STATIC, DYNAMIC), dataset='phantom 3-4'))
    with pytest.raises(GuidanceError, match=r'b\.json: no "datasets"'):
        compare_evaluations(base, {'protocol': PROTOCOL}, names=('a.json', 'b.json'))
    twice = _doc(_errors(NEW_STATIC, DYNAMIC))
    twice['datasets']['phantom 1-2']['run_table'].append(twice['datasets']['phantom 1-2']['run_table'][0])
    with pytest.raises(GuidanceError, match='appears twice'):
        compare_evaluations(base, twice)


def test_text_and_json_say_the_same():
    c = compare_evaluations(_doc(_errors(BASE_STATIC, DYNAMIC)), _doc(_errors(NEW_STATIC, DYNAMIC)))
    text = comparison_text(c, ('a.json', 'b.json'))
    assert 'within 5 deg: 70.0 % -> 80.0 % (+10.0 points' in text
    assert '2 rescued, 1 lost, 7 on the same side' in text
    assert 'rescued  phantom:1 run 1: 8.0 -> 0.4 deg (converged)' in text
    assert 'lost     phantom:2 run 3: 4.9 -> 5.1 deg (mismatch)' in text
    assert 'median time to view: ' in text
    doc = json.loads(json.dumps(comparison_json(c, ('a.json', 'b.json'))))
    assert doc['base'] == 'a.json' and [x['mode'] for x in doc['comparisons']] == ['static', 'dynamic']
    assert doc['comparisons'][0]['sign_test_p'] == pytest.approx(c[0].sign_test_p)
    assert len(doc['comparisons'][0]['rescued']) == 2
    assert doc['comparisons'][0]['new_time_to_view_s'] == pytest.approx(c[0].new_time_to_view_s)


@pytest.mark.slow
def test_command_compares_two_real_evaluations(tmp_path, capsys):
    """Two oracle evaluations of the same tiny volumes, the second with a gain too low to arrive in time."""
    from test_eval_guidance import tiny_volume

    from echoposed_sim.volume_io import save_volume
    vols = tmp_path / 'vols'
    vols.mkdir()
    for s in (0, 1):
        save_volume(tiny_volume(s), vols / f'tiny{s}.npz')
    runs = []
    for name, gain in (('base', 1.0), ('slow', 0.02)):
        controller = tmp_path / f'{name}.yaml'
        controller.write_text('echoposed_controller:\n  ros__parameters:\n    uncertainty_threshold: 0.37\n'
                              f'    fine_enabled: false\n    gain: {gain}\n')
        out = tmp_path / f'{name}.json'
        rc = main(['eval', 'guidance', '--volumes', str(vols), '--oracle', '--runs', '2', '--inter-runs', '0',
                   '--max-seconds', '8', '--json', str(out), '--quiet', '--controller', str(controller)])
        assert rc == 0, capsys.readouterr().err
        runs.append(out)
    capsys.readouterr()
    rc = main(['eval', 'compare', str(runs[0]), str(runs[1]), '--json', str(tmp_path / 'cmp.json')])
    assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    doc = json.loads((tmp_path / 'cmp.json').read_text())
    static = doc['comparisons'][0]
    assert static['mode'] == 'static' and static['runs'] == 4 and static['base_share'] == 1.0
    assert static['lost'] and not static['rescued'] and static['new_share'] < 1.0
    assert 'volumes vols, static: 4 paired runs' in text and 'lost     ' in text
    # a file of other draws is refused with exit status 2 and the reason
    other = json.loads(runs[1].read_text())
    other['protocol']['runs'] = 3
    (tmp_path / 'other.json').write_text(json.dumps(other))
    assert main(['eval', 'compare', str(runs[0]), str(tmp_path / 'other.json')]) == 2
    assert 'protocol.runs differs: 2 in' in capsys.readouterr().err
    assert main(['eval', 'compare', str(runs[0]), str(tmp_path / 'missing.json')]) == 2
    assert 'missing.json: no such file' in capsys.readouterr().err
    # a gzipped evaluation reads as the file itself; a cut one is refused, naming it
    import gzip
    packed = gzip.compress(runs[0].read_bytes())
    (tmp_path / 'base.json.gz').write_bytes(packed)
    assert main(['eval', 'compare', str(tmp_path / 'base.json.gz'), str(runs[1])]) == 0
    def body(out):
        return [line for line in out.splitlines() if not line.startswith(('before:', 'wrote'))]
    assert body(capsys.readouterr().out) == body(text)
    (tmp_path / 'cut.json.gz').write_bytes(packed[:len(packed) // 2])
    assert main(['eval', 'compare', str(tmp_path / 'cut.json.gz'), str(runs[1])]) == 2
    assert 'cut.json.gz: not a readable JSON file' in capsys.readouterr().err
