"""ROS 2 adapters for slowfast: nodes, message conversion, QoS, node utilities and the stack profiles."""
