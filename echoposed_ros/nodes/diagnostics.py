"""Publishing one ``diagnostic_msgs/DiagnosticStatus`` per node on ``/diagnostics``."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

__all__ = ['ERROR', 'OK', 'WARN', 'DiagnosticsPublisher']

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR


class DiagnosticsPublisher:
    """Publishes the node's status on the absolute topic ``/diagnostics`` (ROS convention); ``hardware_id``
    (e.g. the model file) may change between reports."""

    def __init__(self, node: Any, name: str, hardware_id: str = '') -> None:
        self._node = node
        self._name = name
        self.hardware_id = hardware_id
        self._pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)

    def publish(self, level: bytes, message: str, values: Mapping[str, Any]) -> None:
        status = DiagnosticStatus(level=level, name=self._name, message=message,
                                  hardware_id=self.hardware_id)
        status.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
        array = DiagnosticArray()
        array.header.stamp = self._node.get_clock().now().to_msg()
        array.status = [status]
        self._pub.publish(array)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:.6g}'
    return str(value)
