"""MuJoCo contact-rich simulator: tasks, sensor models, experts, metrics. No ROS."""
