"""ros2 launch slowfast_ros robot_rdp.launch.py policy:=EXPORT_DIR [ARG:=VALUE ...]

The nodes of the stack profile slowfast_ros/profiles/robot-rdp.yaml (the same as `slowfast up robot-rdp`).
"""
from slowfast_ros.launch_util import profile_launch_description


def generate_launch_description():
    return profile_launch_description("robot-rdp")
