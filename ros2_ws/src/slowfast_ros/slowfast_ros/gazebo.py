"""The Gazebo wipe world's files for launch/sim_gazebo.launch.py (no ``launch`` import here).

One world, ``gazebo/wipe.sdf`` (table, camera, systems, and the Cartesian gantry model), two
robots: ``panda``, the sim's Panda from its URDF (``sim.urdf``) under gz_ros2_control and the
README's controllers, in the world with the gantry model taken out; ``gantry``, the world as
it is. The gazebo/ folder is found through $SLOWFAST_GAZEBO_DIR, the source checkout, the
package's share folder, or /opt/slowfast/gazebo (the container).
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

ROBOTS = ("panda", "gantry")
#: The Panda's controllers (gazebo/panda_controllers.yaml), spawned in this order.
CONTROLLERS = ("joint_state_broadcaster", "force_torque_sensor_broadcaster", "cartesian_compliance_controller")
#: The compliance controller reads the wrist wrench on <controller>/ft_sensor_wrench; the
#: broadcaster publishes it on its own topic (what robot_bridge_node reads): one stream for
#: both, by a remapping the gz_ros2_control plugin passes to its controllers.
FT_REMAP = "/cartesian_compliance_controller/ft_sensor_wrench:=/force_torque_sensor_broadcaster/wrench"
GANTRY_MODEL = "wipe_gantry"
WORLD = "wipe.sdf"


def gazebo_dir() -> Path:
    from slowfast_ros import profiles

    share = profiles._share_dir()
    candidates = [os.environ.get("SLOWFAST_GAZEBO_DIR", ""), profiles._SOURCE_ROOT / "gazebo",
                  (share / "gazebo") if share else "", "/opt/slowfast/gazebo"]
    for c in candidates:
        if c and (Path(c) / WORLD).is_file():
            return Path(c)
    raise FileNotFoundError(f"gazebo/{WORLD} not found: set SLOWFAST_GAZEBO_DIR to the repository's gazebo/ folder")


def world_file(robot: str, gz_dir: Path, out_dir: Path) -> Path:
    """The world to start for ``robot``: wipe.sdf itself (gantry), or a copy in ``out_dir``
    without the gantry model (panda, spawned from its description)."""
    if robot not in ROBOTS:
        raise ValueError(f"robot: {robot!r} is not one of {', '.join(ROBOTS)}")
    src = gz_dir / WORLD
    if robot == "gantry":
        return src
    tree = ET.parse(src)
    world = tree.getroot().find("world")
    gantry = next((m for m in world.findall("model") if m.get("name") == GANTRY_MODEL), None)
    if gantry is not None:
        world.remove(gantry)
    out = Path(out_dir) / "wipe_panda.sdf"
    tree.write(out, encoding="unicode", xml_declaration=True)
    return out


def panda_description(gz_dir: Path) -> str:
    """The Panda's URDF with the gz_ros2_control plugin loading gazebo/panda_controllers.yaml."""
    from sim.urdf import arm_urdf

    return arm_urdf("wipe", controllers=gz_dir / "panda_controllers.yaml", remappings=(FT_REMAP,))
