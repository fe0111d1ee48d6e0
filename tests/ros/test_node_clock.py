"""node_util.node_now: a node's ROS time, read from the system clock directly unless a clock
source (/clock, use_sim_time) drives it, when it is rclpy's clock."""
import time

import pytest
import rclpy
from rclpy.context import Context
from rclpy.time import Time

from slowfast_ros.node_util import node_now, node_now_ns

pytestmark = pytest.mark.dds


def test_node_now_is_the_nodes_ros_time_with_and_without_a_clock_source():
    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("node_now_check", context=ctx)
    try:
        before = time.time()
        got, got_ns = node_now(node), node_now_ns(node)
        assert before <= got <= time.time() and before <= got_ns * 1e-9 <= time.time()
        clock = node.get_clock()
        clock._set_ros_time_is_active(True)       # what rclpy's TimeSource does for use_sim_time
        clock.set_ros_time_override(Time(seconds=12, nanoseconds=5))
        assert node_now_ns(node) == 12_000_000_005 == clock.now().nanoseconds
        assert node_now(node) == clock.now().nanoseconds * 1e-9
        clock._set_ros_time_is_active(False)
        assert node_now(node) >= before
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)
