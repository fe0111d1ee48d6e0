"""Drivers for real hardware without ROS: vision-tactile marker tracking, RealSense capture, robot adapters."""
