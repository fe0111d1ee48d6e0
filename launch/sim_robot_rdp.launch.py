"""ros2 launch slowfast_ros sim_robot_rdp.launch.py [ARG:=VALUE ...]

The robot-rdp control path (policy nodes + robot_bridge_node) against the simulated Panda: the
nodes of the stack profile slowfast_ros/profiles/sim-robot-rdp.yaml (the same as
`slowfast up sim-robot-rdp`).
"""
from slowfast_ros.launch_util import profile_launch_description


def generate_launch_description():
    return profile_launch_description("sim-robot-rdp")
