"""The repository is a well-formed ROS 2 package pair laid out as specified."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(('folder', 'name', 'build_type'), [
    ('.', 'echoposed', 'ament_python'),
    ('echoposed_msgs', 'echoposed_msgs', 'ament_cmake'),
])
def test_package_xml_parses_with_catkin_pkg(folder, name, build_type):
    package = parse_package(str(ROOT / folder / 'package.xml'))
    package.validate()
    assert package.name == name
    assert package.package_format == 3
    assert package.get_build_type() == build_type


def test_interface_package_is_a_rosidl_package():
    package = parse_package(str(ROOT / 'echoposed_msgs' / 'package.xml'))
    assert 'rosidl_interface_packages' in [group.name for group in package.member_of_groups]
    assert 'rosidl_default_generators' in [dep.name for dep in package.buildtool_depends]


@pytest.mark.parametrize('path', [
    'echoposed_ros', 'echoposed_msgs', 'launch', 'sim', 'models', 'tests', 'package.xml',
    'setup.py', 'README.md', 'config', 'docs', 'benchmarks', '.ci/run', 'requirements.txt',
    'resource/echoposed',
])
def test_layout_exists(path):
    assert (ROOT / path).exists(), f'{path} is missing from the repository root'


@pytest.mark.parametrize('name', ['EchoPose.msg', 'ProbeTwist.msg', 'GuidanceStatus.msg',
                                  'SetTarget.srv', 'RenderView.srv'])
def test_interface_names_are_kept_and_every_field_is_documented(name):
    folder = 'msg' if name.endswith('.msg') else 'srv'
    lines = (ROOT / 'echoposed_msgs' / folder / name).read_text().splitlines()
    commented = False
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped == '---':
            commented = False
            continue
        if stripped.startswith('#'):
            commented = True
            continue
        # A field or constant: documented inline, or by the comment heading its block (a block
        # ends at a blank line).
        assert commented or '#' in stripped, f'{name}: field "{stripped}" has no comment'


def test_no_module_imports_a_bare_sim_package():
    offenders = []
    for path in list((ROOT / 'echoposed_ros').rglob('*.py')) + list((ROOT / 'sim').rglob('*.py')) \
            + list((ROOT / 'tests').rglob('*.py')) + list((ROOT / 'benchmarks').rglob('*.py')):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(name == 'sim' or name.startswith('sim.') for name in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f'these import a bare "sim" (use echoposed_sim): {offenders}'


def test_runtime_packages_do_not_need_torch():
    """Import every runtime module with torch made unimportable."""
    code = """
import importlib, importlib.abc, pkgutil, sys

class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"runtime module imported {name}")
        return None

sys.meta_path.insert(0, BlockTorch())
import echoposed_ros, echoposed_sim
runtime = []
for package in (echoposed_ros, echoposed_sim):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if (".training" in info.name or info.name.endswith(("cli.train", "cli.export"))
                or info.name.endswith(("__main__", "bringup.ros_launch"))):  # ros_launch needs launch_ros
            continue
        runtime.append(info.name)
for name in runtime:
    importlib.import_module(name)
assert "torch" not in sys.modules
print(len(runtime))
"""
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env=dict(os.environ), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip().splitlines()[-1]) >= 1


def test_cli_help_lists_every_subcommand():
    echoposed = Path(sys.executable).with_name('echoposed')
    result = subprocess.run([str(echoposed), '--help'],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    from echoposed_ros.cli import SUBCOMMANDS
    for name in SUBCOMMANDS:
        assert name in result.stdout


def test_console_scripts_are_declared():
    tree = ast.parse((ROOT / 'setup.py').read_text())
    text = ast.unparse(tree)
    assert "'echoposed = echoposed_ros.cli:main'" in text


def _pins(name: str) -> dict[str, str]:
    """``{canonical package name: version}`` of a pip file's ``name==version`` lines."""
    from packaging.utils import canonicalize_name

    out = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split('#')[0].strip()
        if line:
            package, sep, version = line.partition('==')
            assert sep and version, f'{name}: "{line}" is not pinned with =='
            out[canonicalize_name(package)] = version
    return out


def test_constraints_pin_what_the_requirements_pull_in_and_the_venv_has_those_versions():
    import sysconfig
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    direct, held = _pins('requirements.txt'), _pins('constraints.txt')
    assert not set(direct) & set(held), f'pinned in both files: {sorted(set(direct) & set(held))}'
    # What pip installed into the venv's site-packages; not the whole sys.path, where an imported
    # setuptools may have put its _vendor folder (which carries its own older packaging).
    site = sorted({sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']})
    installed = {canonicalize_name(d.metadata['Name']): d.version for d in metadata.distributions(path=site)}
    # every direct dependency's own requirements are constrained (one level is enough to catch a
    # pin added to requirements.txt without regenerating constraints.txt)
    for package in direct:
        if package not in installed:
            continue
        for text in metadata.requires(package) or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({'extra': ''}):
                continue   # an extra, or another platform
            dep = canonicalize_name(req.name)
            assert dep in direct or dep in held, f'{package} needs {dep}, pinned in neither file'
    wrong = {p: (v, installed[p]) for p, v in held.items() if p in installed and installed[p] != v}
    assert not wrong, f'constraints.txt differs from the installed .venv (pinned, installed): {wrong}'
