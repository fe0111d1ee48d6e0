"""Message conversions: every numpy <-> ROS conversion round-trips, bad input is refused."""
import math

import numpy as np
import pytest

from slowfast_ros import msgs


def test_time_round_trip_is_nanosecond_exact():
    for t in (0.0, 1.5, 1_763_700_000.123456789, 42.000000001):
        back = msgs.from_time(msgs.to_time(t))
        assert abs(back - t) < 1e-6
    ts = msgs.to_time(3.999999999)
    assert (ts.sec, ts.nanosec) == (3, 999_999_999)


def test_pose_and_wrench_round_trip():
    pos, quat = np.array([0.1, -0.2, 0.3]), np.array([0.0, 0.7071068, 0.0, 0.7071068])
    m = msgs.pose_msg(12.5, "world", pos, quat)
    assert m.header.frame_id == "world"
    stamp, p2, q2 = msgs.pose_from_msg(m)
    assert stamp == pytest.approx(12.5) and np.allclose(p2, pos) and np.allclose(q2, quat)
    w = np.arange(6, dtype=float) - 2.5
    stamp, w2 = msgs.wrench_from_msg(msgs.wrench_msg(3.0, "arm_tool", w))
    assert np.allclose(w2, w)


def test_marker_field_round_trip_organised_and_with_lost_markers():
    rng = np.random.default_rng(0)
    field = rng.normal(size=(63, 4)).astype(np.float32)
    field[5] = np.nan  # a lost marker
    m = msgs.markers_msg(1.0, "pad", field, grid=(7, 9))
    assert (m.height, m.width, m.point_step) == (7, 9, 16)
    assert [f.name for f in m.fields] == ["x", "y", "dx", "dy"]
    assert not m.is_dense
    _, back = msgs.markers_from_msg(m)
    assert np.array_equal(np.isnan(back), np.isnan(field))
    assert np.allclose(back[~np.isnan(back)], field[~np.isnan(field)])


def test_marker_field_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        msgs.markers_msg(0.0, "pad", np.zeros((5, 3)))
    with pytest.raises(ValueError, match="grid"):
        msgs.markers_msg(0.0, "pad", np.zeros((10, 4)), grid=(3, 3))


def test_images_rgb_depth_and_camera_info():
    rgb = np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    _, back = msgs.image_from_msg(msgs.image_msg(2.0, "cam", rgb))
    assert np.array_equal(back, rgb)
    depth = np.array([[1.2345, np.nan], [0.0, 70.0]])
    m = msgs.depth_msg_mm(2.0, "cam", depth)
    assert m.encoding == "16UC1"
    _, d = msgs.depth_from_msg(m)
    assert d[0, 0] == pytest.approx(1.234, abs=1e-3) or d[0, 0] == pytest.approx(1.235, abs=1e-3)
    assert np.isnan(d[0, 1]) and np.isnan(d[1, 0]) and np.isnan(d[1, 1])  # invalid -> 0 mm -> NaN
    intr = msgs.CameraIntrinsics(320, 240, 300.0, 301.0, 160.5, 119.5, "cam_optical")
    back = msgs.intrinsics_from_msg(msgs.camera_info_msg(0.0, intr))
    assert back == intr


def test_images_refuse_unknown_encoding_and_short_data():
    m = msgs.image_msg(0.0, "cam", np.zeros((4, 4, 3), np.uint8))
    m.encoding = "yuv422"
    with pytest.raises(ValueError, match="encoding"):
        msgs.image_from_msg(m)
    m = msgs.image_msg(0.0, "cam", np.zeros((4, 4, 3), np.uint8))
    m.height = 8
    with pytest.raises(ValueError, match="too short"):
        msgs.image_from_msg(m)


def test_json_events_and_diagnostics():
    assert msgs.json_from_msg(msgs.json_msg({"event": "start", "x": 1})) == {"event": "start", "x": 1}
    from std_msgs.msg import String
    with pytest.raises(ValueError):
        msgs.json_from_msg(String(data="{not json"))
    st = msgs.diagnostic_status("node", {"rate": 199.87654321, "n": 3}, "warn", "slow")
    assert msgs.diagnostics_values(st) == {"rate": "199.877", "n": "3"}
    assert not math.isnan(float(msgs.diagnostics_values(st)["rate"]))


def test_chunk_round_trip_and_malformed_chunks():
    data = np.random.default_rng(2).normal(size=(8, 4)).astype(np.float32)
    m = msgs.chunk_msg(100.25, "world", "latent", data, row_dt=0.08)
    assert m.joint_names[:2] == ["latent_0", "latent_1"]
    assert m.points[3].time_from_start.nanosec == 240_000_000
    stamp, kind, back = msgs.chunk_from_msg(m)
    assert stamp == pytest.approx(100.25) and kind == "latent" and np.allclose(back, data)
    m.points[2].positions = [1.0, 2.0]
    with pytest.raises(ValueError, match="one position per joint"):
        msgs.chunk_from_msg(m)
    m = msgs.chunk_msg(1.0, "world", "action", data, 0.02)
    m.joint_names = ["foo_0", "foo_1", "foo_2", "foo_3"]
    with pytest.raises(ValueError, match="joint_names"):
        msgs.chunk_from_msg(m)
