"""ros2 launch slowfast_ros sim_rdp.launch.py policy:=EXPORT_DIR [ARG:=VALUE ...]

The nodes of the stack profile slowfast_ros/profiles/sim-rdp.yaml (the same as `slowfast up sim-rdp`).
"""
from slowfast_ros.launch_util import profile_launch_description


def generate_launch_description():
    return profile_launch_description("sim-rdp")
