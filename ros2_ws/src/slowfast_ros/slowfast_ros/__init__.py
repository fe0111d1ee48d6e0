"""ROS 2 adapters for slowfast: nodes, message conversion, QoS, and the `slowfast` command."""
