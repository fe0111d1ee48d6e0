"""ros2 launch slowfast_ros sim_gazebo.launch.py [robot:=panda|gantry] [headless:=true]

The wipe task in Gazebo (gz sim): the world gazebo/wipe.sdf, ros_gz_bridge with
gazebo/bridge.yaml (clock, camera), and a robot.

robot:=panda (default): the sim's Panda from its URDF (sim/urdf.py, every number from the MuJoCo
arm), spawned by ros_gz_sim from robot_state_publisher's /robot_description, under
gz_ros2_control with the controllers of a real arm's setup (gazebo/panda_controllers.yaml:
joint_state_broadcaster, force_torque_sensor_broadcaster, FZI's cartesian_compliance_controller),
and the nodes of the stack profile `gazebo-arm`: robot_bridge_node with its cartesian_controllers
adapter, as on a robot, and tcp_pose_node (the TCP pose from the joint states).
Needs ros_gz, gz_ros2_control, ros2_controllers and cartesian_controllers
(``apt install ros-$ROS_DISTRO-ros-gz ros-$ROS_DISTRO-gz-ros2-control ros-$ROS_DISTRO-ros2-controllers``;
cartesian_controllers from source where the distro has no binary).

robot:=gantry: the world's Cartesian gantry, gazebo/bridge_gantry.yaml, and the stack profile
`gazebo` (robot_bridge_node with its gz_gantry adapter). Needs ros_gz only.

The gazebo/ folder is found through $SLOWFAST_GAZEBO_DIR, the source checkout, the package's
share folder or /opt/slowfast/gazebo (the container).
"""
import tempfile
from pathlib import Path

from slowfast_ros.gazebo import CONTROLLERS, ROBOTS, gazebo_dir, panda_description, world_file
from slowfast_ros.launch_util import profile_launch_description


def _robot_actions(context):
    from launch.actions import ExecuteProcess
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    robot = LaunchConfiguration("robot").perform(context)
    headless = LaunchConfiguration("headless").perform(context).lower() in ("true", "1")
    gz = gazebo_dir()
    world = world_file(robot, gz, Path(tempfile.mkdtemp(prefix="slowfast_gz_")))
    actions = [ExecuteProcess(cmd=["gz", "sim", "-r", *(["-s"] if headless else []), str(world)], output="screen"),
               Node(package="ros_gz_bridge", executable="parameter_bridge", name="gz_bridge", output="screen",
                    parameters=[{"config_file": str(gz / "bridge.yaml"), "use_sim_time": True}])]
    if robot == "gantry":
        actions.append(Node(package="ros_gz_bridge", executable="parameter_bridge", name="gz_bridge_gantry",
                            output="screen",
                            parameters=[{"config_file": str(gz / "bridge_gantry.yaml"), "use_sim_time": True}]))
        return actions + list(profile_launch_description("gazebo").entities)
    actions += [
        Node(package="robot_state_publisher", executable="robot_state_publisher", output="screen",
             parameters=[{"robot_description": panda_description(gz), "use_sim_time": True}]),
        Node(package="ros_gz_sim", executable="create", output="screen",
             arguments=["-topic", "robot_description", "-name", "panda"]),
    ]
    for name in CONTROLLERS:
        actions.append(Node(package="controller_manager", executable="spawner", output="screen",
                            arguments=[name, "--controller-manager", "/controller_manager"]))
    return actions + list(profile_launch_description("gazebo-arm").entities)


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    return LaunchDescription([
        DeclareLaunchArgument("robot", default_value="panda", choices=list(ROBOTS),
                              description="panda: the sim's arm under ros2_control | gantry: the Cartesian gantry"),
        DeclareLaunchArgument("headless", default_value="true", description="run the Gazebo server only (no GUI)"),
        OpaqueFunction(function=_robot_actions),
    ])
