"""The sim's Panda as a URDF with ros2_control tags, for Gazebo and robot_state_publisher.

Every number comes from the compiled MuJoCo scene the sim runs (``SimEnv``, embodiment
``arm``): link frames, joint axes and ranges, inertials, the tool at the flange, the wrist F/T
frame and the TCP; torque limits from the actuators, speed limits from
:class:`sim.arm_control.ArmControlConfig`. So the Gazebo arm, the Cartesian controller's KDL
chain and :class:`hardware.kinematics.UrdfChain` see the arm the MuJoCo sim simulates.

Frames: ``base_link`` is the arm's base (the frame of the ros2_control topics, as on a real
arm); ``<arm>_link0`` ... ``<arm>_link7`` are robosuite's Panda links; ``<arm>_flange`` is
Panda's flange; ``<arm>_ft_sensor`` is the wrist F/T sensor (the sim's ``<arm>_ft`` site);
``<arm>_tool`` is the TCP (the sim's ``<arm>_tcp`` site, the pad's contact face). A ``world``
link holds ``base_link`` where the task puts the arm, so Gazebo welds it there. The joints
start at the sim's home posture (ros2_control ``initial_value``). The links are visual only,
as in the sim (no arm-table or self contact); the pad is the one collision body.

``python -m sim.urdf --out panda.urdf`` writes it (``check_urdf panda.urdf`` reads it).
"""
from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

#: The Gazebo hardware of the ros2_control block, and its system plugin.
GZ_HARDWARE = "gz_ros2_control/GazeboSimSystem"
GZ_PLUGIN = ("gz_ros2_control-system", "gz_ros2_control::GazeboSimROS2ControlPlugin")


def _fmt(v) -> str:
    return " ".join(f"{round(float(x), 12) + 0.0:.9g}" for x in np.ravel(v))    # no "-0", no 1e-17


def _origin(parent: ET.Element, pos, rot: np.ndarray) -> None:
    """An ``<origin>`` of position ``pos`` and rotation matrix ``rot``."""
    from slowfast_data.geometry import matrix_rpy

    ET.SubElement(parent, "origin", xyz=_fmt(pos), rpy=_fmt(matrix_rpy(rot)))


def _frame(m, d, body: int | None = None, site: int | None = None) -> np.ndarray:
    """4x4 world pose of a body or site in ``d``."""
    t = np.eye(4)
    if site is not None:
        t[:3, :3], t[:3, 3] = d.site_xmat[site].reshape(3, 3), d.site_xpos[site]
    else:
        t[:3, :3], t[:3, 3] = d.xmat[body].reshape(3, 3), d.xpos[body]
    return t


def arm_urdf(task: str = "wipe", arm: str | None = None, mesh_dir: str | Path | None = None,
             controllers: str | Path | None = None, remappings: tuple[str, ...] = ()) -> str:
    """The URDF of the task's arm ``arm`` (default: its only arm). ``mesh_dir``: where the
    link meshes are (default: this package's copy), written as file:// URIs; ``controllers``:
    the controller_manager parameter file for the Gazebo plugin (no ``<gazebo>`` plugin when
    None), ``remappings`` (``from:=to``) passed on to the controller manager and its controllers."""
    import mujoco

    from sim import SimConfig, SimEnv
    from slowfast_data.geometry import quat_to_matrix_one, quat_wxyz_to_matrix
    from sim.arm import FLANGE_OFFSET, N_JOINTS, PANDA_DIR, joint_names
    from sim.arm_control import ArmControlConfig

    env = SimEnv(SimConfig(task=task, embodiment="arm", render=False))
    arms = tuple(env.arms)
    arm = arm or (arms[0] if len(arms) == 1 else None)
    if arm not in arms:
        raise ValueError(f"arm: choose one of {', '.join(arms)} for task {task}")
    env.reset()
    home = np.asarray(env.joint_state(arm)["position"], float)   # where Gazebo starts the joints
    m = env.model
    d = mujoco.MjData(m)
    mujoco.mj_kinematics(m, d)                       # q = 0: every frame at its rest pose
    mesh_dir = Path(mesh_dir) if mesh_dir is not None else PANDA_DIR / "meshes"
    body = lambda name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, name)  # noqa: E731
    site = lambda name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, name)  # noqa: E731
    joints = joint_names(arm)
    speed = ArmControlConfig().velocity_limits

    robot = ET.Element("robot", name=f"panda_{task}")
    ET.SubElement(robot, "link", name="world")
    base_pos, base_quat = env.arm_base(arm)           # x, y, z, w
    j = ET.SubElement(robot, "joint", name="world_joint", type="fixed")
    _origin(j, base_pos, quat_to_matrix_one(base_quat))
    ET.SubElement(j, "parent", link="world")
    ET.SubElement(j, "child", link="base_link")
    ET.SubElement(robot, "link", name="base_link")

    def link(name: str, b: int | None, mesh: str | None = None, body_in_link: np.ndarray | None = None) -> ET.Element:
        """A link carrying body ``b``'s inertia (``body_in_link``: the body frame in the link's
        when they differ) and the visual/collision mesh ``mesh``."""
        el = ET.SubElement(robot, "link", name=name)
        if b is not None and m.body_mass[b] > 0:
            inertial = ET.SubElement(el, "inertial")
            t = np.eye(4) if body_in_link is None else body_in_link
            _origin(inertial, t[:3, :3] @ m.body_ipos[b] + t[:3, 3], t[:3, :3] @ quat_wxyz_to_matrix(m.body_iquat[b]))
            ET.SubElement(inertial, "mass", value=f"{m.body_mass[b]:.9g}")
            ixx, iyy, izz = m.body_inertia[b]
            ET.SubElement(inertial, "inertia", ixx=f"{ixx:.9g}", ixy="0", ixz="0", iyy=f"{iyy:.9g}", iyz="0",
                          izz=f"{izz:.9g}")
        if mesh:     # visual only: the sim models no arm-table or self contact (sim/arm.py)
            for tag in ("visual",):
                g = ET.SubElement(el, tag)
                geom = ET.SubElement(g, "geometry")
                ET.SubElement(geom, "mesh", filename=(mesh_dir / mesh).resolve().as_uri())
        return el

    def fixed(name: str, parent: str, child: str, t: np.ndarray) -> None:
        el = ET.SubElement(robot, "joint", name=name, type="fixed")
        _origin(el, t[:3, 3], t[:3, :3])
        ET.SubElement(el, "parent", link=parent)
        ET.SubElement(el, "child", link=child)

    b0 = body(f"{arm}_link0")
    link(f"{arm}_link0", b0, "link0.stl")
    fixed(f"{arm}_link0_joint", "base_link", f"{arm}_link0",
          np.linalg.inv(_frame(m, d, body(f"{arm}_base"))) @ _frame(m, d, b0))
    for i in range(1, N_JOINTS + 1):
        b = body(f"{arm}_link{i}")
        link(f"{arm}_link{i}", b, f"link{i}.stl")
        jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, joints[i - 1])
        if np.any(m.jnt_pos[jid] != 0):
            raise ValueError(f"{joints[i - 1]}: a joint off its body origin has no URDF equivalent here")
        el = ET.SubElement(robot, "joint", name=joints[i - 1], type="revolute")
        _origin(el, m.body_pos[b], quat_wxyz_to_matrix(m.body_quat[b]))
        ET.SubElement(el, "parent", link=f"{arm}_link{i - 1}")
        ET.SubElement(el, "child", link=f"{arm}_link{i}")
        ET.SubElement(el, "axis", xyz=_fmt(m.jnt_axis[jid]))
        act = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, f"{arm}_torq_j{i}")
        lo, hi = m.jnt_range[jid]
        ET.SubElement(el, "limit", lower=f"{lo:.9g}", upper=f"{hi:.9g}",
                      effort=f"{np.abs(m.actuator_ctrlrange[act]).min():.9g}", velocity=f"{speed[i - 1]:.9g}")
        ET.SubElement(el, "dynamics", damping=f"{m.dof_damping[m.jnt_dofadr[jid]]:.9g}")

    # the flange, the wrist F/T sensor and the TCP, where the sim's tool body and sites are
    link7 = _frame(m, d, body(f"{arm}_link7"))
    flange = np.eye(4)
    flange[2, 3] = FLANGE_OFFSET
    ft = np.linalg.inv(link7) @ _frame(m, d, site=site(f"{arm}_ft"))
    tcp = np.linalg.inv(link7) @ _frame(m, d, site=site(f"{arm}_tcp"))
    tool = body(f"{arm}_tool")
    link(f"{arm}_flange", None)
    fixed(f"{arm}_flange_joint", f"{arm}_link7", f"{arm}_flange", flange)
    link(f"{arm}_ft_sensor", None)
    fixed(f"{arm}_ft_joint", f"{arm}_flange", f"{arm}_ft_sensor", np.linalg.inv(flange) @ ft)
    tool_in_tcp = np.linalg.inv(tcp) @ np.linalg.inv(link7) @ _frame(m, d, tool)
    tool_link = link(f"{arm}_tool", tool, body_in_link=tool_in_tcp)
    fixed(f"{arm}_tool_joint", f"{arm}_ft_sensor", f"{arm}_tool", np.linalg.inv(ft) @ tcp)
    for g in range(m.ngeom):
        if m.geom_bodyid[g] != tool:
            continue
        t = np.eye(4)
        t[:3, :3], t[:3, 3] = quat_wxyz_to_matrix(m.geom_quat[g]), m.geom_pos[g]
        t = tool_in_tcp @ t
        size = m.geom_size[g]
        touches = bool(m.geom_contype[g] or m.geom_conaffinity[g])
        for tag in ("visual", "collision") if touches else ("visual",):
            el = ET.SubElement(tool_link, tag)
            _origin(el, t[:3, 3], t[:3, :3])
            geom = ET.SubElement(el, "geometry")
            if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX:
                ET.SubElement(geom, "box", size=_fmt(2 * size))
            elif m.geom_type[g] == mujoco.mjtGeom.mjGEOM_CYLINDER:
                ET.SubElement(geom, "cylinder", radius=f"{size[0]:.9g}", length=f"{2 * size[1]:.9g}")
            else:
                tool_link.remove(el)

    # ros2_control: the joints as a Cartesian controller drives them (position commands from
    # its forward-dynamics solver), and the wrist F/T sensor
    rc = ET.SubElement(robot, "ros2_control", name=arm, type="system")
    ET.SubElement(ET.SubElement(rc, "hardware"), "plugin").text = GZ_HARDWARE
    for name, q0 in zip(joints, home):
        el = ET.SubElement(rc, "joint", name=name)
        ET.SubElement(el, "command_interface", name="position")
        for s in ("position", "velocity", "effort"):
            si = ET.SubElement(el, "state_interface", name=s)
            if s == "position":
                ET.SubElement(si, "param", name="initial_value").text = f"{q0:.9g}"
    sensor = ET.SubElement(rc, "sensor", name=f"{arm}_ft")
    for ax in ("force.x", "force.y", "force.z", "torque.x", "torque.y", "torque.z"):
        ET.SubElement(sensor, "state_interface", name=ax)
    gz = ET.SubElement(robot, "gazebo", reference=f"{arm}_ft_joint")
    ET.SubElement(gz, "preserveFixedJoint").text = "true"
    s = ET.SubElement(gz, "sensor", name=f"{arm}_ft", type="force_torque")
    ET.SubElement(s, "always_on").text = "true"
    ET.SubElement(s, "update_rate").text = "1000"
    ET.SubElement(s, "topic").text = f"/{arm}/ft"
    fts = ET.SubElement(s, "force_torque")
    ET.SubElement(fts, "frame").text = "child"
    ET.SubElement(fts, "measure_direction").text = "child_to_parent"
    if controllers is not None:
        plugin = ET.SubElement(ET.SubElement(robot, "gazebo"), "plugin", filename=GZ_PLUGIN[0], name=GZ_PLUGIN[1])
        ET.SubElement(plugin, "parameters").text = str(Path(controllers).resolve())
        if remappings:
            ros = ET.SubElement(plugin, "ros")
            for r in remappings:
                ET.SubElement(ros, "remapping").text = r
    ET.indent(robot)
    return '<?xml version="1.0"?>\n' + ET.tostring(robot, encoding="unicode") + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.urdf", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="wipe")
    p.add_argument("--arm", default=None, help="the arm of a two-arm task (lift: left | right)")
    p.add_argument("--controllers", default=None, help="controller_manager YAML for the Gazebo plugin")
    p.add_argument("--out", default="-", help="output file ('-' = stdout)")
    args = p.parse_args(argv)
    try:
        text = arm_urdf(args.task, args.arm, controllers=args.controllers)
    except ValueError as exc:
        print(f"python -m sim.urdf: error: {exc}", file=sys.stderr)
        return 2
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
