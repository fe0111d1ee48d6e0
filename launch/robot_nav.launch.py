"""ros2 launch slowfast_ros robot_nav.launch.py checkpoint:=DIR [ARG:=VALUE ...]

The nodes of the stack profile slowfast_ros/profiles/robot-nav.yaml (the same as `slowfast up robot-nav`).
"""
from slowfast_ros.launch_util import profile_launch_description


def generate_launch_description():
    return profile_launch_description("robot-nav")
