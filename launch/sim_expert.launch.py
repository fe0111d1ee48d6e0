"""ros2 launch slowfast_ros sim_expert.launch.py [ARG:=VALUE ...]

The nodes of the stack profile slowfast_ros/profiles/sim-expert.yaml (the same as `slowfast up sim-expert`).
"""
from slowfast_ros.launch_util import profile_launch_description


def generate_launch_description():
    return profile_launch_description("sim-expert")
