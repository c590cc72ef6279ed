"""The arm model: KUKA LBR iiwa 7 (``kuka_iiwa/model.urdf`` from ``pybullet_data``) with a probe tool.

The tool, appended to the iiwa's last link (``lbr_iiwa_link_7``) in a generated URDF, is

- ``probe_roll`` (continuous revolute joint about the flange z axis, 45 mm past the A7 joint
  frame, i.e. on the flange face): a motorised probe holder that turns the probe about its own
  beam without limit. The iiwa's A7 stops at +-175 degrees, so a probe turned over the whole
  circle (and on, as a controller may command) cannot be served by A7 alone; robotic
  ultrasound holders use a roll stage for the same reason.
- ``probe_holder`` (cylinder, radius 30 mm, length 40 mm) and ``probe_body`` (cylinder, radius 20 mm,
  length 120 mm) rigidly on the roll stage, and
- ``probe_tip``: a massless-looking link whose frame *is* the probe frame P of docs/method.md section 1:
  origin at the sector apex (the probe face), z = beam (out of the flange, into the body),
  x = lateral, y = elevation.

Lengths here are metres (PyBullet's unit). The generated text refers to the shipped meshes by
absolute path, so it can live in any temporary folder; :func:`rviz_description` turns those paths
into ``file://`` URIs (what RViz resolves). :func:`probe_urdf_text` is the probe alone (the
kinematic world's robot description).
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass

import pybullet_data

from .errors import WorldError

__all__ = ['IIWA', 'PANDA', 'ArmSpec', 'arm_urdf_text', 'probe_urdf_text', 'rviz_description', 'write_arm_urdf']


@dataclass(frozen=True)
class ArmSpec:
    """Names and tool geometry of the arm model (lengths in metres, angles in radians)."""

    urdf: str                       # path relative to pybullet_data
    arm_joints: tuple[str, ...]     # revolute arm joints, base to flange
    flange_link: str                # link the tool is mounted on
    roll_joint: str                 # the tool's continuous roll joint
    tip_link: str                   # link whose frame is the probe frame P
    flange_offset: float            # flange face, along the flange link's z, from its frame origin
    holder_length: float
    probe_length: float
    home_pose: tuple[float, ...]    # seed (rad) for the home configuration at the apical window


IIWA = ArmSpec(
    urdf='kuka_iiwa/model.urdf',
    arm_joints=tuple(f'lbr_iiwa_joint_{i}' for i in range(1, 8)),
    flange_link='lbr_iiwa_link_7',
    roll_joint='probe_roll',
    tip_link='probe_tip',
    flange_offset=0.045,
    holder_length=0.04,
    probe_length=0.12,
    home_pose=(0.0, 0.53, 0.0, -1.1, 0.0, 1.1, 0.0),
)

# Franka Emika Panda (``franka_panda/panda.urdf``), for comparison (docs/world.md): the tool goes on the
# flange link ``panda_link8``; the hand stays on the model but nothing collides with the scene.
PANDA = ArmSpec(
    urdf='franka_panda/panda.urdf',
    arm_joints=tuple(f'panda_joint{i}' for i in range(1, 8)),
    flange_link='panda_link8',
    roll_joint='probe_roll',
    tip_link='probe_tip',
    flange_offset=0.0,
    holder_length=0.04,
    probe_length=0.12,
    home_pose=(0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785),
)


def _cylinder_inertia(mass: float, radius: float, length: float) -> str:
    ixx = mass * (3 * radius ** 2 + length ** 2) / 12.0
    izz = mass * radius ** 2 / 2.0
    return f'<inertia ixx="{ixx:.6g}" ixy="0" ixz="0" iyy="{ixx:.6g}" iyz="0" izz="{izz:.6g}"/>'


def _cylinder_link(name: str, mass: float, radius: float, length: float, material: str, rgba: str) -> str:
    """A URDF link: a solid cylinder (m, kg) along its frame's +z from the origin, as visual and collision."""
    centre = f'<origin rpy="0 0 0" xyz="0 0 {length / 2}"/>'
    shape = f'<geometry><cylinder length="{length}" radius="{radius}"/></geometry>'
    return f"""
  <link name="{name}">
    <inertial>{centre}<mass value="{mass}"/>{_cylinder_inertia(mass, radius, length)}</inertial>
    <visual>{centre}{shape}
      <material name="{material}"><color rgba="{rgba}"/></material></visual>
    <collision>{centre}
      {shape}</collision>
  </link>"""


def _probe_xml(spec: ArmSpec) -> str:
    """``probe_body`` and ``probe_tip`` (the apex, frame P), joined by the fixed joint ``probe_apex``."""
    L = spec.probe_length
    return _cylinder_link('probe_body', 0.2, 0.02, L, 'probe_white', '0.9 0.9 0.9 1') + f"""
  <joint name="probe_apex" type="fixed">
    <parent link="probe_body"/>
    <child link="{spec.tip_link}"/>
    <origin rpy="0 0 0" xyz="0 0 {L}"/>
  </joint>
  <link name="{spec.tip_link}">
    <inertial><origin rpy="0 0 0" xyz="0 0 0"/><mass value="0.001"/>
      <inertia ixx="1e-8" ixy="0" ixz="0" iyy="1e-8" iyz="0" izz="1e-8"/></inertial>
  </link>
"""


def _tool_xml(spec: ArmSpec) -> str:
    h = spec.holder_length
    return f"""
  <joint name="{spec.roll_joint}" type="continuous">
    <parent link="{spec.flange_link}"/>
    <child link="probe_holder"/>
    <origin rpy="0 0 0" xyz="0 0 {spec.flange_offset}"/>
    <axis xyz="0 0 1"/>
    <limit effort="50" velocity="6"/>
  </joint>""" + _cylinder_link('probe_holder', 0.3, 0.03, h, 'holder_grey', '0.4 0.4 0.45 1') + f"""
  <joint name="probe_mount" type="fixed">
    <parent link="probe_holder"/>
    <child link="probe_body"/>
    <origin rpy="0 0 0" xyz="0 0 {h}"/>
  </joint>
""" + _probe_xml(spec)


def arm_urdf_text(spec: ArmSpec) -> str:
    """The arm + probe tool URDF (mesh paths absolute, into the installed ``pybullet_data``)."""
    source = os.path.join(pybullet_data.getDataPath(), spec.urdf)
    with open(source, encoding='utf-8') as f:
        text = f.read()
    mesh_dir = os.path.dirname(source)
    text = re.sub(r'filename="(?:package://)?(?!/)([^"]+)"',
                  lambda m: f'filename="{os.path.join(mesh_dir, m.group(1))}"', text)
    if f'name="{spec.flange_link}"' not in text or '</robot>' not in text:
        raise WorldError(f'{source}: no link {spec.flange_link!r} or no </robot>; not the expected arm model')
    return text.replace('</robot>', _tool_xml(spec) + '</robot>')


def probe_urdf_text(spec: ArmSpec = IIWA) -> str:
    """The probe alone (``probe_body`` -> ``probe_tip``), as the kinematic world's robot description."""
    return f'<?xml version="1.0"?>\n<robot name="echoposed_probe">{_probe_xml(spec)}</robot>\n'


def rviz_description(urdf: str) -> str:
    """``urdf`` with every absolute mesh path as a ``file://`` URI: RViz resolves URIs (``file://``,
    ``package://``), not bare paths; PyBullet takes the bare paths."""
    return re.sub(r'filename="/', 'filename="file:///', urdf)


def write_arm_urdf(spec: ArmSpec, folder: str | None = None) -> str:
    """Write the arm + probe tool URDF into ``folder`` (a new temporary folder if None); return its path."""
    text = arm_urdf_text(spec)
    folder = folder or tempfile.mkdtemp(prefix='echoposed_arm_')
    path = os.path.join(folder, 'arm_with_probe.urdf')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)
    return path
