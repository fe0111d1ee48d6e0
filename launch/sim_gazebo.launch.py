"""ros2 launch slowfast_ros sim_gazebo.launch.py [headless:=true] [arm:=arm]

The wipe task in Gazebo (gz sim): the world gazebo/wipe.sdf, ros_gz_bridge with
gazebo/bridge.yaml, and the nodes of the stack profile slowfast_ros/profiles/gazebo.yaml (the
robot bridge on the world's gantry). Needs ros_gz (``apt install ros-$ROS_DISTRO-ros-gz``);
the gazebo/ folder is found through $SLOWFAST_GAZEBO_DIR, the source checkout, or
/opt/slowfast/gazebo (the container).
"""
import os
from pathlib import Path

from slowfast_ros.launch_util import profile_launch_description


def gazebo_dir() -> Path:
    from slowfast_ros import profiles

    candidates = [os.environ.get("SLOWFAST_GAZEBO_DIR", ""), profiles._SOURCE_ROOT / "gazebo", "/opt/slowfast/gazebo"]
    for c in candidates:
        if c and (Path(c) / "wipe.sdf").is_file():
            return Path(c)
    raise FileNotFoundError("gazebo/wipe.sdf not found: set SLOWFAST_GAZEBO_DIR to the repository's gazebo/ folder")


def generate_launch_description():
    from launch.actions import DeclareLaunchArgument, ExecuteProcess
    from launch.conditions import IfCondition, UnlessCondition
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    gz = gazebo_dir()
    ld = profile_launch_description("gazebo")
    ld.add_action(DeclareLaunchArgument("headless", default_value="true",
                                        description="run the Gazebo server only (no GUI)"))
    world = str(gz / "wipe.sdf")
    ld.add_action(ExecuteProcess(cmd=["gz", "sim", "-r", "-s", world], output="screen",
                                 condition=IfCondition(LaunchConfiguration("headless"))))
    ld.add_action(ExecuteProcess(cmd=["gz", "sim", "-r", world], output="screen",
                                 condition=UnlessCondition(LaunchConfiguration("headless"))))
    ld.add_action(Node(package="ros_gz_bridge", executable="parameter_bridge", name="gz_bridge", output="screen",
                       parameters=[{"config_file": str(gz / "bridge.yaml"), "use_sim_time": True}]))
    return ld
