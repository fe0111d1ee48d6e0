"""ros2 launch slowfast_ros sim_robot.launch.py [ARG:=VALUE ...]

The robot-side control path against the simulated Panda: the nodes of the stack profile
slowfast_ros/profiles/sim-robot.yaml (the same as `slowfast up sim-robot`).
"""
from slowfast_ros.launch_util import profile_launch_description


def generate_launch_description():
    return profile_launch_description("sim-robot")
