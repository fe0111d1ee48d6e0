"""Benchmarks that need ROS 2 nodes (the ROS-free ones live next to their code)."""
