"""MJCF scenes of the tasks, generated from a few parameters.

Frames (all world frames are z-up, metres):

* ``<arm>_tcp`` site: the tool centre point, at the centre of the pad's contact face. At the
  identity orientation the tool frame is aligned with the world frame.
* ``<arm>_pad`` site: the tactile pad frame, at the TCP, z axis = outward pad normal (pointing
  into the touched object), x/y span the pad face. The marker grid lives in its x/y plane.
* ``<arm>_target``: a mocap body carrying the commanded TCP pose; six ``position`` actuators
  with a site transmission (``site=<arm>_tcp``, ``refsite=<arm>_target``) form a Cartesian
  spring-damper between the two: MuJoCo computes the impedance wrench natively every step.

Tool bodies are gravity-compensated (``gravcomp=1``) like a robot's payload compensation, so
the coupling carries only contact and inertial loads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np

# Per-task coupling gains: translational (N/m, N·s/m) and rotational (N·m/rad, N·m·s/rad).
GAINS = {
    "wipe": {"kp": 1000.0, "kv": 35.0, "kr": 4.0, "dr": 0.06},
    "lift": {"kp": 1000.0, "kv": 35.0, "kr": 25.0, "dr": 0.25},
}
TOOL_MASS = 0.3  # kg, each tool
# Contact softness of the wiping pad and the table: impedance rising from 0.5 to 0.95 over
# 3 mm of penetration, like a compliant gel/sponge pad. Stiff, rigid-like contacts (MuJoCo's
# default solimp) make a flat pad sliding with friction chatter (contacts lift off and re-land
# at ~100 Hz); this softness keeps the sliding normal force steady. The lift paddles keep the
# default (stiffer) contacts: soft contacts creep under a static friction load.
PAD_SOLIMP = "0.5 0.95 0.003"
# With the arm embodiment the pad-table contact is softer still (time constant 60 ms instead of
# MuJoCo's 20 ms): the arm's apparent inertia couples the sliding friction force into the
# normal direction (a tangential push accelerates the TCP up or down too), and with the stiffer
# contact the pad hops along the path at ~70 Hz (~4 ms of ~30 N contact, ~10 ms off: contact
# lost ~40 % of the time, wipe expert 0/3). 60 ms, a thick sponge pad: hops ~5 % of the time.
ARM_PAD_SOLREF = "0.06 1"


@dataclass
class ArmGeometry:
    """What the task plan knows about one arm's tool."""

    home_pos: np.ndarray
    home_quat_wxyz: np.ndarray
    pad_quat_tool_wxyz: np.ndarray     # pad frame relative to the tool frame
    pad_half: Tuple[float, float]      # half extents of the pad face (x, y in pad frame), m
    workspace: Tuple[np.ndarray, np.ndarray]


@dataclass
class SceneSpec:
    xml: str
    arms: Tuple[str, ...]
    geometry: Dict[str, ArmGeometry] = field(default_factory=dict)
    extras: Dict[str, object] = field(default_factory=dict)


def _mat2quat(mat: np.ndarray) -> np.ndarray:
    import mujoco

    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.asarray(mat, float).reshape(9))
    return q


def _lookat(pos, target, up=(0.0, 0.0, 1.0)) -> str:
    """``xyaxes`` of a camera at ``pos`` looking at ``target`` (MuJoCo cameras look along -z)."""
    pos, target, up = (np.asarray(v, float) for v in (pos, target, up))
    fwd = target - pos
    fwd /= np.linalg.norm(fwd)
    x = np.cross(fwd, up)
    x /= np.linalg.norm(x)
    y = np.cross(x, fwd)
    return " ".join(f"{v:.5f}" for v in np.concatenate([x, y]))


def _fmt(v) -> str:
    return " ".join(f"{float(x):.6g}" for x in np.ravel(v))


def _actuators(arm: str, g: dict, kp: float) -> str:
    out = []
    for i in range(6):
        gear = ["0"] * 6
        gear[i] = "1"
        k, c = (kp, g["kv"]) if i < 3 else (g["kr"], g["dr"])
        out.append(
            f'<position name="{arm}_imp{i}" site="{arm}_tcp" refsite="{arm}_target" '
            f'gear="{" ".join(gear)}" kp="{k:.6g}" kv="{c:.6g}"/>'
        )
    return "\n    ".join(out)


def _tool(arm: str, pos, pad_quat_tool, pad_half, thickness=0.01, rgba="0.2 0.5 0.9 1",
          contact: str = 'solimp="0.9 0.95 0.001"', mount: bool = False) -> str:
    """A tool body: a flat pad box whose contact face is at the TCP, facing the pad normal, and
    the mocap body of its target. Floating (``mount=False``): a free, gravity-compensated body
    at ``pos``, coupled by :func:`_actuators`. Mounted: the tool of an arm (``sim/arm.py``), a
    body welded to link 7 with the pad normal along the flange z axis and the TCP
    ``TOOL_LENGTH`` beyond the flange, where the wrist F/T site ``<arm>_ft`` is."""
    R = np.zeros(9)
    import mujoco

    mujoco.mju_quat2Mat(R, pad_quat_tool)
    n = R.reshape(3, 3)[:, 2]                     # pad normal in the tool frame
    centre = -n * thickness / 2                    # pad box centre sits behind the face
    back = -n * (thickness + 0.02)                 # a handle behind the pad (visual only)
    if mount:
        from .arm import FLANGE_OFFSET, TOOL_LENGTH, quat_z_to

        # the tool hangs below the flange: the flange is TOOL_LENGTH along the tool's +z from the
        # TCP, its axis pointing down (tool -z); a pad facing down (wipe) sits on a holder along
        # that axis, a pad facing sideways (lift's paddles) on a holder behind it
        up = np.array([0.0, 0.0, 1.0])
        opening = (f'<body name="{arm}_tool" pos="0 0 {FLANGE_OFFSET + TOOL_LENGTH:.6g}" '
                   f'quat="{_fmt(quat_z_to(-up))}">')
        if float(np.dot(n, up)) < -0.5:
            holder, half = up * (thickness + TOOL_LENGTH) / 2, (TOOL_LENGTH - thickness) / 2
        else:
            holder, half = up * TOOL_LENGTH / 2 - n * (thickness + 0.015), TOOL_LENGTH / 2
        extra = f"""
    <geom name="{arm}_holder" type="cylinder" size="0.015 {half:.6g}" pos="{_fmt(holder)}"
          contype="0" conaffinity="0" mass="0" rgba="0.3 0.3 0.32 1"/>
    <site name="{arm}_ft" pos="{_fmt(up * TOOL_LENGTH)}" size="0.003" rgba="0 0 1 0"/>"""
    else:
        opening = f'<body name="{arm}_tool" pos="{_fmt(pos)}" gravcomp="1">\n    <freejoint name="{arm}_free"/>'
        extra = ""
    tool = f"""
  {opening}
    <inertial pos="{_fmt(centre)}" mass="{TOOL_MASS}" diaginertia="3e-4 3e-4 3e-4"/>
    <geom name="{arm}_pad" type="box" size="{pad_half[0]:.6g} {pad_half[1]:.6g} {thickness / 2:.6g}"
          pos="{_fmt(centre)}" quat="{_fmt(pad_quat_tool)}" rgba="{rgba}" friction="0.05 0.005 0.0001"
          {contact}/>
    <geom name="{arm}_handle" type="cylinder" size="0.012 0.02" pos="{_fmt(back)}" quat="{_fmt(pad_quat_tool)}"
          contype="0" conaffinity="0" rgba="0.6 0.6 0.6 1"/>
    <site name="{arm}_tcp" pos="0 0 0" size="0.004" rgba="1 0 0 1"/>
    <site name="{arm}_pad" pos="0 0 0" quat="{_fmt(pad_quat_tool)}" size="0.002" rgba="0 1 0 0"/>{extra}
  </body>"""
    target = f"""
  <body name="{arm}_target" mocap="true" pos="{_fmt(pos)}">
    <site name="{arm}_target" size="0.006" rgba="1 0.6 0 0.3" group="4"/>
  </body>"""
    if not mount:
        return tool + target
    return tool, target


def _embodied(cfg, arms, tools, g: dict, kp: float) -> Tuple[str, str, str, str, Dict]:
    """(assets, world bodies, actuators, sensors, extras) holding ``tools`` ({arm: (home pos,
    pad quat, pad half, kwargs of :func:`_tool`)}) as the configured embodiment."""
    if cfg.embodiment == "floating":
        bodies = "\n".join(_tool(a, *tools[a][:3], **tools[a][3]) for a in arms)
        return "", bodies, "\n    ".join(_actuators(a, g, kp) for a in arms), "", {}
    from .arm import ARM_BASES, base_quat_wxyz, panda_actuators, panda_assets, panda_body

    bodies, acts, sensors = [], [], []
    bases = ARM_BASES[cfg.task]
    for a in arms:
        tool, target = _tool(a, *tools[a][:3], mount=True, **tools[a][3])
        pos, yaw = bases[a]
        bodies.append(panda_body(a, pos, base_quat_wxyz(yaw), tool) + target)
        bodies.append(f'<geom name="{a}_pedestal" type="cylinder" size="0.09 {0.3:.6g}" '
                      f'pos="{_fmt(np.asarray(pos) - [0, 0, 0.3])}" rgba="0.25 0.25 0.28 1" contype="0" conaffinity="0"/>')
        acts.append(panda_actuators(a))
        sensors.append(f'<force name="{a}_ft_force" site="{a}_ft"/>\n    <torque name="{a}_ft_torque" site="{a}_ft"/>')
    sensor = "<sensor>\n    " + "\n    ".join(sensors) + "\n  </sensor>"
    return panda_assets(), "\n".join(bodies), "\n    ".join(acts), sensor, {"arm_bases": {a: bases[a] for a in arms}}


def _header(cfg, model_name: str, assets: str = "") -> str:
    w, h = max(cfg.camera_width, 640), max(cfg.camera_height, 480)
    return f"""
<mujoco model="{model_name}">
  <compiler angle="radian"/>
  <option timestep="{cfg.timestep:.6g}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual><global offwidth="{w}" offheight="{h}"/><quality shadowsize="1024"/></visual>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1=".35 .35 .38" rgb2=".3 .3 .33" width="256" height="256"/>
    <material name="grid" texture="grid" texrepeat="6 6"/>
    <texture name="wood" type="2d" builtin="flat" rgb1=".72 .6 .45" width="16" height="16"/>
    <material name="wood" texture="wood"/>
    {assets}
  </asset>
  <worldbody>
    <light pos="0.3 -0.3 1.2" dir="-0.2 0.2 -1" diffuse="0.8 0.8 0.8"/>
    <light pos="-0.4 0.3 1.0" dir="0.3 -0.2 -1" diffuse="0.4 0.4 0.4" castshadow="false"/>
    <geom name="floor" type="plane" size="2 2 0.1" pos="0 0 -0.6" material="grid" contype="0" conaffinity="0"/>"""


def wipe_scene(cfg) -> SceneSpec:
    """Wipe: one pad tool on a mocap table whose top surface is z=0 at the table origin."""
    g = dict(GAINS["wipe"])
    kp = float(cfg.stiffness or g["kp"])
    pad_half = (0.03, 0.04)
    pad_q = _mat2quat(np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1]]))  # pad normal = tool -z
    home = np.array([-0.15, -0.05, 0.06])
    ws = (np.array([-0.35, -0.25, -0.08]), np.array([0.35, 0.25, 0.35]))
    contact = f'solimp="{PAD_SOLIMP}"' + (f' solref="{ARM_PAD_SOLREF}"' if cfg.embodiment == "arm" else "")
    assets, bodies, acts, sensors, extras = _embodied(
        cfg, ("arm",), {"arm": (home, pad_q, pad_half, {"contact": contact})}, g, kp)
    xml = _header(cfg, "slowfast_wipe", assets) + f"""
    <body name="table" mocap="true" pos="0 0 0">
      <!-- contact surface: a plane (robust face contacts); the box is its visual body -->
      <geom name="table" type="plane" size="0.3 0.2 0.01" pos="0 0 0" rgba="0 0 0 0" friction="0.3 0.005 0.0001"
            {contact}/>
      <geom name="table_body" type="box" size="0.3 0.2 0.02" pos="0 0 -0.02" material="wood" contype="0" conaffinity="0"/>
      <geom name="stripe" type="box" size="0.16 0.06 0.0005" pos="0 0 0.0002" rgba="0.95 0.95 0.95 1" contype="0" conaffinity="0"/>
    </body>
    <geom name="stand" type="box" size="0.28 0.18 0.29" pos="0 0 -0.33" rgba="0.25 0.25 0.28 1" contype="0" conaffinity="0"/>
    <camera name="camera" pos="0.05 -0.42 0.32" xyaxes="{_lookat((0.05, -0.42, 0.32), (0.0, 0.0, 0.0))}" fovy="50"/>
    {bodies}
  </worldbody>
  <actuator>
    {acts}
  </actuator>
  {sensors}
</mujoco>"""
    geo = {"arm": ArmGeometry(home, np.array([1.0, 0, 0, 0]), pad_q, pad_half, ws)}
    return SceneSpec(xml=xml, arms=("arm",), geometry=geo, extras={"gains": dict(g, kp=kp), **extras})


BOX_HALF = (0.05, 0.04, 0.05)


def lift_scene(cfg) -> SceneSpec:
    """Lift: a box on a fixed table (top z=0), squeezed between two paddles along world y.

    ``left`` is at +y and presses along -y, ``right`` at -y presses along +y. Both pads' y axis
    points up, so tangential load from the box's weight shows as -y shear in both pad frames.
    """
    g = dict(GAINS["lift"])
    kp = float(cfg.stiffness or g["kp"])
    pad_half = (0.03, 0.03)
    grasp_z = 0.085
    # columns: the pad x, y, z axes in the tool (= world at identity) frame
    left_q = _mat2quat(np.column_stack([[1, 0, 0], [0, 0, 1], [0, -1, 0]]))
    right_q = _mat2quat(np.column_stack([[-1, 0, 0], [0, 0, 1], [0, 1, 0]]))
    bx, by, bz = BOX_HALF
    homes = {"left": np.array([0.0, by + 0.04, grasp_z]), "right": np.array([0.0, -by - 0.04, grasp_z])}
    ws = (np.array([-0.2, -0.25, 0.0]), np.array([0.2, 0.25, 0.4]))
    assets, bodies, acts, sensors, extras = _embodied(
        cfg, ("left", "right"), {"left": (homes["left"], left_q, pad_half, {"rgba": "0.2 0.5 0.9 1"}),
                                 "right": (homes["right"], right_q, pad_half, {"rgba": "0.2 0.8 0.4 1"})}, g, kp)
    xml = _header(cfg, "slowfast_lift", assets) + f"""
    <geom name="table" type="box" size="0.3 0.25 0.02" pos="0 0 -0.02" material="wood" friction="0.5 0.005 0.0001"/>
    <geom name="stand" type="box" size="0.28 0.23 0.29" pos="0 0 -0.33" rgba="0.25 0.25 0.28 1" contype="0" conaffinity="0"/>
    <camera name="camera" pos="0.45 -0.4 0.28" xyaxes="{_lookat((0.45, -0.4, 0.28), (0.0, 0.0, 0.12))}" fovy="50"/>
    <body name="box" pos="0 0 {bz:.6g}">
      <freejoint name="box_free"/>
      <geom name="box" type="box" size="{bx} {by} {bz}" mass="0.4" rgba="0.85 0.3 0.25 1" friction="0.7 0.005 0.0001"/>
    </body>
    {bodies}
  </worldbody>
  <actuator>
    {acts}
  </actuator>
  {sensors}
</mujoco>"""
    geo = {
        "left": ArmGeometry(homes["left"], np.array([1.0, 0, 0, 0]), left_q, pad_half, ws),
        "right": ArmGeometry(homes["right"], np.array([1.0, 0, 0, 0]), right_q, pad_half, ws),
    }
    return SceneSpec(xml=xml, arms=("left", "right"), geometry=geo,
                     extras={"gains": dict(g, kp=kp), "box_half": BOX_HALF, "grasp_z": grasp_z, **extras})


def build_scene(cfg) -> SceneSpec:
    return {"wipe": wipe_scene, "lift": lift_scene}[cfg.task](cfg)
