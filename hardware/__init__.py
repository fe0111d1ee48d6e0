"""Hardware-side algorithms of slowfast, without ROS: what the robot's driver nodes need
but is not a policy, a sim or teleoperation.

- :mod:`hardware.markers`: marker detection and tracking for vision-based tactile sensors
  (GelSight Mini style): sub-pixel blob centroids, one-to-one gated matching against a
  reference frame, lost markers as NaN.
- :mod:`hardware.clock`: mapping a device clock (camera hardware timestamps) to ROS time.
- :mod:`hardware.realsense`: a RealSense RGB-D reader on top of ``pyrealsense2`` (colour,
  depth aligned to colour, intrinsics, device timestamps) that the node reopens when the device drops.
- :mod:`hardware.robot`: the robot adapter boundary of the command bridge, the command
  gate (validation, deadline, hold) and the base<->world transform.
- :mod:`hardware.adapters`: the bridge's adapters (ros2_control's Cartesian controllers, a
  Cartesian gantry): measured state in, commands out through a function the node gives.
- :mod:`hardware.realtime`: running a fast control loop on the host: ticks phase-locked to
  the contact sensor's readings or paced by the clock, SCHED_FIFO / CPU affinity / locked
  memory where permitted, and where a tick's time goes.

The ROS nodes in ``slowfast_ros/nodes/{realsense,gelsight,robot_bridge}_node.py`` are thin
adapters over these; every piece here is tested without DDS and without the hardware.
"""
