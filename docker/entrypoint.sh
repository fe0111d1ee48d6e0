#!/usr/bin/env bash
# Source ROS 2, cartesian_controllers (gazebo image) and the colcon install of slowfast_ros,
# then run the command.
set -e
. "/opt/ros/${ROS_DISTRO:-kilted}/setup.bash"
[ -f /opt/cartesian_controllers/setup.bash ] && . /opt/cartesian_controllers/setup.bash
[ -f /opt/slowfast/install/setup.bash ] && . /opt/slowfast/install/setup.bash
exec "$@"
