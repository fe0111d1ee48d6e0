"""ros2 launch slowfast_ros teleop.launch.py [ARG:=VALUE ...]

The nodes of the stack profile slowfast_ros/profiles/teleop.yaml (the same as `slowfast up teleop`).
"""
from slowfast_ros.launch_util import profile_launch_description


def generate_launch_description():
    return profile_launch_description("teleop")
