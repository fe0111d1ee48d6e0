"""Build a ROS 2 LaunchDescription from a stack profile (used by the files in launch/).

Each profile argument becomes a launch argument (``ros2 launch slowfast_ros
sim_expert.launch.py task:=lift``); each node becomes a launch_ros ``Node`` of this package
with the profile's parameter files, and the arguments that target it as parameter
overrides; the DDS transports are those of `slowfast up` (slowfast_ros.qos.transport_env).
`slowfast up` starts the same nodes from the same profile without launch.
"""
from __future__ import annotations


def profile_launch_description(profile_name: str):
    from launch import LaunchDescription  # noqa: PLC0415
    from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable  # noqa: PLC0415
    from launch.substitutions import LaunchConfiguration  # noqa: PLC0415
    from launch_ros.actions import Node  # noqa: PLC0415
    from launch_ros.parameter_descriptions import ParameterValue  # noqa: PLC0415

    from slowfast_ros.qos import transport_env  # noqa: PLC0415
    from slowfast_ros.profiles import load_profile  # noqa: PLC0415

    profile = load_profile(profile_name)
    actions = [SetEnvironmentVariable(k, v) for k, v in transport_env().items()]   # as `slowfast up`
    actions += [DeclareLaunchArgument(a.name, default_value=str(a.default), description=a.description)
                for a in profile.arguments]
    for spec in profile.nodes:
        overrides = dict(spec.overrides)
        for a in profile.arguments:
            for target in a.targets:
                node, _, pname = target.partition(".")
                if node == spec.name:
                    overrides[pname] = ParameterValue(LaunchConfiguration(a.name), value_type=type(a.default))
        actions.append(Node(
            package="slowfast_ros", executable=spec.executable, name=spec.name,
            namespace=spec.namespace or None, output="screen",
            parameters=[str(p) for p in spec.param_files()] + ([overrides] if overrides else [])))
    return LaunchDescription(actions)
