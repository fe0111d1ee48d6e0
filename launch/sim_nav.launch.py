"""ros2 launch slowfast_ros sim_nav.launch.py [checkpoint:=DIR (default checkpoints/vln, the shipped small model)] [ARG:=VALUE ...]

The nodes of the stack profile slowfast_ros/profiles/sim-nav.yaml (the same as `slowfast up sim-nav`).
"""
from slowfast_ros.launch_util import profile_launch_description


def generate_launch_description():
    return profile_launch_description("sim-nav")
