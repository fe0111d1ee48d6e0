"""TactAR teleoperation: headset protocol, retargeting, recording, dataset export. No ROS."""
