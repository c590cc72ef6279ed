"""Two OS processes exchange EchoPose and ProbeTwist over rclpy (real DDS, localhost only)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PEER = Path(__file__).with_name('exchange_peer.py')


@pytest.mark.slow
def test_echopose_and_probetwist_cross_process_boundary():
    env = dict(os.environ)
    responder = subprocess.Popen([sys.executable, str(PEER), 'twist-responder', '--timeout', '60', '--count', '1'],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sender = subprocess.run([sys.executable, str(PEER), 'pose-sender', '--timeout', '60'],
                                env=env, capture_output=True, text=True, timeout=90)
        out, err = responder.communicate(timeout=90)
    finally:
        if responder.poll() is None:
            responder.kill()
    assert sender.returncode == 0, f'pose sender failed:\n{sender.stdout}\n{sender.stderr}'
    assert responder.returncode == 0, f'twist responder failed:\n{out}\n{err}'
    echoed = json.loads(sender.stdout.strip().splitlines()[-1])
    assert echoed['frame_id'] == 'probe'
    assert echoed['orbit'] == pytest.approx([0.1, 0.2, 0.3])
    assert echoed['probe'] == pytest.approx([0.0, 0.6, 0.0])


def test_suite_runs_on_its_own_localhost_domain():
    assert os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert 1 <= int(os.environ['ROS_DOMAIN_ID']) <= 101
