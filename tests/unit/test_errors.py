"""One base error: every exception echoposed raises on bad input is an EchoposedError, and the
command line prints such errors as one line while letting any other exception show its traceback."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import types

import pytest

import echoposed_ros
import echoposed_sim
from echoposed_ros import cli
from echoposed_ros.errors import EchoposedError

# Imports the ros2 launch stack (launch, launch_ros), which ROS 2 installs have and this venv has not.
_NEEDS_ROS_LAUNCH = {'echoposed_ros.bringup.ros_launch'}


def _project_modules() -> list[types.ModuleType]:
    modules = []
    for package in (echoposed_ros, echoposed_sim):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):
            if info.name.endswith('__main__') or info.name in _NEEDS_ROS_LAUNCH:
                continue
            modules.append(importlib.import_module(info.name))
    return modules


def _defined_classes() -> list[type]:
    return [obj for module in _project_modules() for _, obj in inspect.getmembers(module, inspect.isclass)
            if obj.__module__ == module.__name__]


def test_every_project_exception_is_an_echoposed_error():
    exceptions = [c for c in _defined_classes() if issubclass(c, BaseException) and not c.__name__.startswith('_')]
    assert len(exceptions) >= 15, exceptions  # every subpackage has its own
    strays = sorted(f'{c.__module__}.{c.__name__}' for c in exceptions if not issubclass(c, EchoposedError))
    assert not strays, f'exceptions outside EchoposedError: {strays}'


def test_names_ending_in_error_are_exceptions():
    misnamed = sorted(f'{c.__module__}.{c.__name__}' for c in _defined_classes()
                      if c.__name__.endswith('Error') and not issubclass(c, BaseException))
    assert not misnamed, f'classes named like exceptions that are not: {misnamed}'


def test_echoposed_error_is_a_value_error_for_older_callers():
    assert issubclass(EchoposedError, ValueError)


def _fake_command(monkeypatch, exc: BaseException) -> None:
    module = types.ModuleType('echoposed_fake_command')
    module.add_arguments = lambda parser: None

    def run(args):
        raise exc

    module.run = run
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.SUBCOMMANDS, 'fake', (module.__name__, 'a command that fails'))


def test_cli_prints_a_project_error_as_one_line_and_exits_2(monkeypatch, capsys):
    from echoposed_ros.geometry import GeometryError
    _fake_command(monkeypatch, GeometryError('orbit quaternion [0, 0, 0, 0] (x,y,z,w): expected a non-zero norm'))
    assert cli.main(['fake']) == 2
    err = capsys.readouterr().err
    assert err == 'echoposed fake: orbit quaternion [0, 0, 0, 0] (x,y,z,w): expected a non-zero norm\n'


@pytest.mark.parametrize('exc', [ValueError('a bug, not bad input'), KeyError('missing'), RuntimeError('boom')])
def test_cli_lets_other_exceptions_keep_their_traceback(monkeypatch, exc):
    _fake_command(monkeypatch, exc)
    with pytest.raises(type(exc)):
        cli.main(['fake'])


def test_cli_usage_error_names_the_argument(capsys):
    assert cli.main(['launch', 'sim_guidance', 'seed=3', '--duration', '1']) == 2
    assert "launch argument 'seed=3': expected name:=value" in capsys.readouterr().err
