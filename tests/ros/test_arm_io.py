"""controller_states: what the scripted expert and operator act on, and when they must not."""
import numpy as np

from slowfast_ros.arm_io import ArmSnapshot, controller_states


def snap(pose_t, wrench_t, tactile_t):
    return ArmSnapshot(pose_stamp=pose_t, tcp_pos=np.array([0.1, 0.0, 0.2]), wrench_stamp=wrench_t,
                       wrench=np.zeros(6), tactile_stamp=tactile_t)


def test_states_only_when_complete_started_and_fresh():
    assert controller_states({"arm": snap(10.0, float("nan"), 10.0)}, 5.0, 0.1)[0] == "waiting"
    assert controller_states({"arm": snap(4.0, 4.0, 4.0)}, 5.0, 0.1)[0] == "before_start"
    assert controller_states({"arm": snap(10.0, 9.8, 10.0)}, 5.0, 0.1)[0] == "stale"
    status, states, newest = controller_states({"arm": snap(10.0, 9.95, 10.01)}, 5.0, 0.1)
    assert status == "ok" and newest == 10.01
    assert states["arm"].stamp == 10.01 - 5.0 and np.allclose(states["arm"].tcp_pos, [0.1, 0.0, 0.2])


# ---------------------------------------------------------------- raw CDR of the polled fast loop


def test_raw_cdr_readers_read_what_rclpy_serializes():
    """The polled control thread reads PoseStamped, WrenchStamped and the marker PointCloud2
    from their CDR bytes; they must read exactly what the message conversions read, for any
    frame name length (CDR alignment) and with lost (NaN) markers."""
    from rclpy.serialization import serialize_message

    from slowfast_ros import msgs
    from slowfast_ros.arm_io import cdr_markers, cdr_pose, cdr_wrench

    rng = np.random.default_rng(0)
    for frame in ("", "w", "arm_tool", "a_much_longer_frame_name_x"):
        stamp = 1764921600.123456789 + rng.uniform(0, 1000)
        pos, quat = rng.normal(size=3), rng.normal(size=4)
        pm = msgs.pose_msg(stamp, frame, pos, quat)
        s, pose = cdr_pose(serialize_message(pm))
        s0, p0, q0 = msgs.pose_from_msg(pm)
        assert s == s0 and np.array_equal(pose, np.concatenate([p0, q0]))
        wm = msgs.wrench_msg(stamp, frame, rng.normal(size=6))
        s, w = cdr_wrench(serialize_message(wm))
        s0, w0 = msgs.wrench_from_msg(wm)
        assert s == s0 and np.array_equal(w, w0)
        field = rng.normal(size=(12, 4)).astype(np.float32)
        field[3] = np.nan
        cm = msgs.markers_msg(stamp, frame, field, grid=(3, 4))
        s, m = cdr_markers(serialize_message(cm))
        s0, m0 = msgs.markers_from_msg(cm)
        assert s == s0 and np.array_equal(m, m0, equal_nan=True) and m.flags.writeable


def test_raw_marker_reader_refuses_another_layout():
    import pytest
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import PointCloud2, PointField

    from slowfast_ros.arm_io import cdr_markers

    msg = PointCloud2()
    msg.height, msg.width, msg.point_step, msg.row_step = 1, 2, 16, 32
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate(("x", "y", "z", "intensity"))]
    msg.data = bytes(32)
    with pytest.raises(ValueError, match="x, y, dx, dy"):
        cdr_markers(serialize_message(msg))


def test_raw_pose_publisher_packs_the_message_rclpy_would_send():
    from geometry_msgs.msg import PoseStamped
    from rclpy.serialization import deserialize_message, serialize_message

    from slowfast_ros import msgs
    from slowfast_ros.arm_io import RawPosePublisher

    sent = []

    class Pub:
        def publish(self, b):
            sent.append(b)

    rng = np.random.default_rng(1)
    for frame in ("world", "", "base_link_of_a_long_name"):
        pub = RawPosePublisher(Pub(), frame)
        for _ in range(3):     # the buffer is reused between calls
            stamp = 1764921600.0 + rng.uniform(0, 1e4)
            pos, quat = rng.normal(size=3), rng.normal(size=4)
            pub.publish(stamp, pos, quat)
            expected = msgs.pose_msg(stamp, frame, pos, quat)
            # the same message in the same number of bytes (CDR padding bytes are unspecified)
            assert deserialize_message(sent[-1], PoseStamped) == expected
            assert len(sent[-1]) == len(serialize_message(expected))


def test_an_episode_start_waits_for_its_state_then_restarts_once_with_its_start_stamp():
    """rdp_fast refuses chunks planned before the episode's start stamp (the last episode's,
    still in flight): EpisodeStarts hands it that stamp with the one "restart"."""
    import json

    from std_msgs.msg import String

    from slowfast_ros.arm_io import EpisodeStarts

    starts = EpisodeStarts(None, "")          # no topic: events are fed by hand below
    state = lambda t: {"arm": ArmSnapshot(pose_stamp=t, tcp_pos=np.zeros(3), tcp_quat=np.r_[0, 0, 0, 1.0])}  # noqa: E731
    assert starts.check(state(1.0)) == "run" and starts.start_stamp == -np.inf
    starts._on_event(String(data=json.dumps({"event": "start", "hold_stamp": 5.0, "start_stamp": 5.5})))
    assert starts.check(state(4.9)) == "wait"                 # the arm's state is from before the hold
    assert starts.check(state(5.1)) == "restart" and starts.start_stamp == 5.5
    assert starts.check(state(5.2)) == "run"
    starts._on_event(String(data=json.dumps({"event": "end"})))
    assert starts.check(state(6.0)) == "run" and starts.start_stamp == 5.5
