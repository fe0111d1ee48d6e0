"""Every bad file a user can hand the `slowfast` command gets one line naming the file and
what is wrong with it, a non-zero exit and no traceback; nothing is half-written."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.ros.test_cli import assert_one_line_error, slowfast



def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def checkpoint(tmp_path, trained):
    """A copy of a tiny trained latent diffusion policy checkpoint (with its tokenizer)."""
    dst = tmp_path / "ckpt"
    shutil.copytree(trained / "ldp", dst)
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_model_safetensors_is_one_line_in_export_and_sim(tmp_path, checkpoint, damage):
    weights = checkpoint / "model.safetensors"
    if damage == "truncated":
        _truncate(weights)
    else:
        weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json" + bytes(64))
    r = slowfast("export", str(checkpoint), "--out", str(tmp_path / "exp"))
    assert_one_line_error(r, str(weights), "safetensors")
    r = slowfast("sim", "--controller", "rdp", "--policy", str(checkpoint), "--episodes", "1",
                 "--camera-hz", "0", "--out", str(tmp_path / "sim"))
    assert_one_line_error(r, str(weights), "safetensors")


@pytest.mark.slow
def test_a_damaged_training_checkpoint_is_one_line_on_resume(tmp_path, checkpoint):
    weights = checkpoint / "tokenizer" / "model.safetensors"   # resuming the LDP loads its tokenizer first
    _truncate(weights, 0.3)
    r = slowfast("train", "ldp", "--dataset", str(tmp_path), "--out", str(checkpoint), "--resume")
    assert_one_line_error(r, str(weights), "safetensors")


@pytest.mark.slow
def test_the_resume_loader_names_a_damaged_weight_file(checkpoint):
    from slowfast_data.fileio import load_safetensors

    _truncate(checkpoint / "model.safetensors", 0.3)
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"):
        load_safetensors(checkpoint / "model.safetensors")


def test_a_truncated_runtime_json_is_named(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "runtime.json").write_text('{"model_type": "rdp_ldp", "shapes": {"num_arms": 1, "conta')
    r = slowfast("sim", "--controller", "rdp", "--policy", str(export), "--episodes", "1",
                 "--out", str(tmp_path / "sim"))
    assert_one_line_error(r, str(export / "runtime.json"), "not valid JSON")


@pytest.mark.slow
def test_a_truncated_config_json_is_named(tmp_path, checkpoint):
    _truncate(checkpoint / "config.json")
    r = slowfast("export", str(checkpoint), "--out", str(tmp_path / "exp"))
    assert_one_line_error(r, str(checkpoint / "config.json"), "not valid JSON")


# ------------------------------------------------------------------ convert


def _write_bag(folder: Path, seconds: float = 2.0, hz: float = 100.0) -> None:
    """A small episode bag as the recorder writes it: one arm's pose, wrench, tactile field
    and target at ``hz``, in small MCAP chunks."""
    from rclpy.serialization import serialize_message

    from slowfast_ros import msgs
    from teleop_tactar.bag import BagWriter

    w = BagWriter(folder, chunk_size=4096, custom_data={"task": "wipe", "success": "True"})
    types = {"/arm/tcp_pose": "geometry_msgs/msg/PoseStamped", "/arm/target_tcp": "geometry_msgs/msg/PoseStamped",
             "/arm/tcp_wrench": "geometry_msgs/msg/WrenchStamped",
             "/arm/tactile/markers": "sensor_msgs/msg/PointCloud2"}
    for name, t in types.items():
        w.add_topic(name, t)
    markers = np.zeros((16, 4), np.float32)
    for i in range(int(seconds * hz)):
        t = 100.0 + i / hz
        ns = int(t * 1e9)
        pos = np.array([0.01 * i / hz, 0.0, 0.1])
        quat = np.array([0.0, 0.0, 0.0, 1.0])
        w.write("/arm/tcp_pose", serialize_message(msgs.pose_msg(t, "world", pos, quat)), ns)
        w.write("/arm/target_tcp", serialize_message(msgs.pose_msg(t, "world", pos, quat)), ns)
        w.write("/arm/tcp_wrench", serialize_message(msgs.wrench_msg(t, "tcp", np.zeros(6))), ns)
        w.write("/arm/tactile/markers", serialize_message(msgs.markers_msg(t, "pad", markers)), ns)
    w.close()


@pytest.fixture
def bags(tmp_path):
    good, cut = tmp_path / "bags" / "episode_0000", tmp_path / "bags" / "episode_0001"
    _write_bag(good)
    _write_bag(cut)
    _truncate(next(cut.glob("*.mcap")))
    return good, cut


def test_convert_reports_a_truncated_bag_with_the_seconds_kept_and_exits_1(tmp_path, bags):
    good, cut = bags
    r = slowfast("convert", str(good), str(cut), "--out", str(tmp_path / "ds"), "--fps", "50")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "truncated" in ln]
    assert len(lines) == 1 and str(cut) in lines[0] and "kept" in lines[0], r.stderr
    kept = float(lines[0].split("kept ")[1].split(" s")[0])
    assert 0.3 < kept < 1.7          # about half of the 2 s episode
    assert "2 episode(s)" in r.stdout
    # a good bag alone converts cleanly
    r = slowfast("convert", str(good), "--out", str(tmp_path / "ds2"))
    assert r.returncode == 0 and "truncated" not in r.stderr, r.stderr


def test_convert_checks_out_before_reading_any_bag(tmp_path, bags):
    good, _ = bags
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = slowfast("convert", str(good), "--out", str(blocker / "ds"))
    assert_one_line_error(r, str(blocker / "ds"), "not writable")
    assert str(good) not in r.stderr           # not reported as the bag's fault


# ------------------------------------------------------------------ headset messages


def test_deeply_nested_json_is_bad_json_counted_and_keeps_the_websocket(free_port):
    pytest.importorskip("aiohttp")
    import asyncio

    import aiohttp

    from teleop_tactar.protocol import hand_json
    from teleop_tactar.server import ServerConfig, TeleopServer

    frames = []
    server = TeleopServer(ServerConfig(port=free_port()), on_frame=lambda f, c: frames.append(f)).start()
    try:
        nested = "[" * 8000 + "]" * 8000

        async def go():
            async with aiohttp.ClientSession() as s:
                async with s.post(server.url + "unity", data=nested) as resp:
                    body = await resp.json()
                    assert resp.status == 400 and body["error"] == "bad_json", body
                async with s.ws_connect(server.url + "ws") as ws:
                    await ws.send_str(nested)
                    await ws.send_str(json.dumps(hand_json(1.0, {"right": ([0, 1, 0], [1, 0, 0, 0], 0.0,
                                                                            [False] * 5)})))
                    for _ in range(50):
                        if frames:
                            break
                        await asyncio.sleep(0.05)
                    assert not ws.closed
        asyncio.run(go())
        assert server.counters["rejected/bad_json"] == 2
        assert len(frames) == 1      # the socket went on and delivered the next frame
    finally:
        server.stop()


def test_recursion_in_a_hand_message_is_a_protocol_error():
    from teleop_tactar.protocol import ProtocolError, parse_hands

    with pytest.raises(ProtocolError) as e:
        parse_hands(b"{" + b'"a":{' * 5000)
    assert e.value.reason == "bad_json"
    with pytest.raises(ProtocolError) as e:
        parse_hands("[" * 100000)
    assert e.value.reason == "bad_json"

