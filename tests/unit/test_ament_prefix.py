"""After scripts/setup.sh, .venv is an ament prefix holding echoposed, as ``ros2 run`` and
``ros2 launch`` need it (checked without launch, which is not installed here): with the environment
``source scripts/env.sh`` sets, the ament index finds the package, its share files and every node
executable of setup.py, and an executable starts its node's module."""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV_SH = ROOT / 'scripts' / 'env.sh'


def setup_py_nodes() -> dict[str, str]:
    """NODES of setup.py: {executable: 'module:function'} (read from its source)."""
    tree = ast.parse((ROOT / 'setup.py').read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, 'id', '') for t in node.targets] == ['NODES']:
            return ast.literal_eval(node.value)
    raise AssertionError('setup.py has no NODES table')


def sourced_environment(times: int = 1) -> dict[str, str]:
    """The environment after ``source scripts/env.sh`` (``times`` times) in a bare bash."""
    script = f'source {ENV_SH} && ' * times + 'env -0'
    bare = {'HOME': os.environ.get('HOME', '/tmp'), 'PATH': '/usr/bin:/bin'}
    out = subprocess.run(['bash', '-c', script], env=bare, capture_output=True, text=True, timeout=60, cwd='/')
    assert out.returncode == 0, out.stderr
    return dict(entry.split('=', 1) for entry in out.stdout.split('\0') if '=' in entry)


@pytest.fixture(scope='module')
def ros_env() -> dict[str, str]:
    return sourced_environment()


@pytest.fixture(scope='module')
def index(ros_env) -> dict[str, str]:
    """What ament_index_python says about echoposed, asked in the sourced environment."""
    probe = ('import json; from ament_index_python.packages import get_package_prefix, get_package_share_directory\n'
             "print(json.dumps({'share': get_package_share_directory('echoposed'), "
             "'prefix': get_package_prefix('echoposed')}))")
    out = subprocess.run([sys.executable, '-c', probe], env=ros_env, capture_output=True, text=True, timeout=60,
                         cwd='/')
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_script_sets_the_prefix_path_and_sourcing_twice_adds_nothing(ros_env):
    venv = ROOT / '.venv'
    assert ros_env['AMENT_PREFIX_PATH'].split(':')[0] == str(venv)
    assert ros_env['PATH'].split(':')[0] == str(venv / 'bin')
    assert str(venv / 'lib') in ros_env['LD_LIBRARY_PATH'].split(':')
    twice = sourced_environment(times=2)
    for name in ('AMENT_PREFIX_PATH', 'PATH', 'LD_LIBRARY_PATH'):
        assert twice[name] == ros_env[name], name


def test_the_index_finds_the_share_files_linked_to_the_work_tree(index):
    share = Path(index['share'])
    assert share == ROOT / '.venv' / 'share' / 'echoposed'
    shipped = (('launch', '*.launch.py'), ('config', '*.yaml'), ('models', '*.onnx'))
    expected = ['package.xml'] + [f'{folder}/{path.name}' for folder, pattern in shipped
                                  for path in (ROOT / folder).glob(pattern)]
    assert {'launch/sim_guidance.launch.py', 'launch/guidance.launch.py', 'config/pose.yaml',
            'models/echoposed_k5.onnx'} <= set(expected)
    for name in expected:
        # a link to the work tree's file, so an edited launch or config file takes effect
        assert (share / name).resolve() == (ROOT / name).resolve(), name


def test_every_node_executable_of_setup_py_is_in_lib_and_runs_its_module(index):
    lib = Path(index['prefix']) / 'lib' / 'echoposed'
    nodes = setup_py_nodes()
    assert {'pose_node', 'sim_node', 'controller_node', 'target_node'} <= set(nodes)
    for exe, target in nodes.items():
        path = lib / exe
        assert path.is_file() and os.access(path, os.X_OK), path
        module, function = target.split(':')
        assert f'from {module} import {function}' in path.read_text(), path


@pytest.mark.slow
def test_a_node_executable_from_the_prefix_starts_its_node(index, ros_env):
    """pose_node with a bad parameter: its own one-line refusal, exit 2 (the node was built)."""
    exe = Path(index['prefix']) / 'lib' / 'echoposed' / 'pose_node'
    out = subprocess.run([str(exe), '--ros-args', '-p', 'input_transport:=pigeon'], env=ros_env,
                         capture_output=True, text=True, timeout=60, cwd='/')
    assert out.returncode == 2, out.stdout + out.stderr
    assert 'echoposed_pose' in out.stderr and "input_transport = 'pigeon'" in out.stderr, out.stderr


def _ament_prefix_module():
    spec = importlib.util.spec_from_file_location('ament_prefix', ROOT / 'scripts' / 'ament_prefix.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_prefix_script_links_files_removes_its_stale_links_and_is_idempotent(tmp_path):
    ament_prefix = _ament_prefix_module()
    prefix = tmp_path / 'prefix'
    scripts = [line.split('=')[0].strip()
               for line in ament_prefix.setup_arguments()['entry_points']['console_scripts']]
    (prefix / 'bin').mkdir(parents=True)
    for script in scripts:
        (prefix / 'bin' / script).write_text('#!/bin/sh\n')
    (prefix / 'lib' / 'echoposed').mkdir(parents=True)
    (prefix / 'lib' / 'echoposed' / 'old_node').symlink_to(prefix / 'bin' / scripts[0])   # a removed executable
    (prefix / 'lib' / 'echoposed' / 'notes.txt').write_text('not ours')
    made, removed = ament_prefix.install(prefix)
    assert removed == 1 and not (prefix / 'lib' / 'echoposed' / 'old_node').exists()
    assert (prefix / 'lib' / 'echoposed' / 'notes.txt').read_text() == 'not ours'
    assert sorted(p.name for p in (prefix / 'lib' / 'echoposed').iterdir()) == sorted(scripts + ['notes.txt'])
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'echoposed').exists()
    assert (prefix / 'share' / 'echoposed' / 'launch' / 'sim_guidance.launch.py').resolve() == \
        ROOT / 'launch' / 'sim_guidance.launch.py'
    assert ament_prefix.install(prefix) == (made, 0)
    # a console script that pip did not install is named, nothing half-done is hidden
    (prefix / 'bin' / scripts[0]).unlink()
    with pytest.raises(SystemExit, match=f'bin/{scripts[0]}'):
        ament_prefix.install(prefix)
