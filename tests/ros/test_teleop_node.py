"""teleop_node over DDS: an emulated headset posting the app's JSON at 60 Hz moves the sim
TCP the right way on each axis through safety_node; UDP feedback decodes as the app
expects; bad input is rejected and counted while the robot holds; a silent headset holds."""
import json
import socket
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped

from slowfast_ros import msgs
from slowfast_app import stack
from slowfast_ros.topic_probe import Newest, TopicProbe
from teleop_tactar import protocol
from teleop_tactar.frames import world_to_unity_pos

pytestmark = pytest.mark.dds
I_WXYZ = [1.0, 0.0, 0.0, 0.0]


def _post(url, body):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def _body(pos_unity, clutch=True):
    buttons = [False] * 5
    buttons[protocol.BTN_GRIP] = clutch
    return json.dumps(protocol.hand_json(time.time(), {"right": (pos_unity, I_WXYZ, 0.0, buttons)})).encode()


def test_headset_moves_the_sim_along_each_axis_and_gets_feedback(tmp_path, free_port):
    port = free_port()
    # UDP ports 10001.. shifted by an offset to a free range
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    base = udp.getsockname()[1]
    udp.close()
    offset = base - protocol.PORT_ROBOT_STATE
    socks = {}
    for p in (protocol.PORT_ROBOT_STATE, protocol.PORT_TACTILE, protocol.PORT_FORCE, protocol.PORT_IMAGES):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", p + offset))
        s.settimeout(0.0)
        socks[p] = s
    profile = stack.load_profile("sim-teleop")          # what `slowfast teleop --sim` starts
    overrides = {"sim_node": {"camera_hz": 10.0, "camera_width": 64, "camera_height": 48, "episode_seconds": 300.0,
                              "perturb": False, "start_delay": 0.2},
                 "teleop_node": {"server.port": port, "udp_port_offset": offset, "server.max_rate": 200.0}}
    probe = TopicProbe({"/arm/tcp_pose": PoseStamped, "/arm/target_tcp": PoseStamped})
    url = f"http://127.0.0.1:{port}/unity"

    newest = Newest(probe.node, "/arm/tcp_pose", PoseStamped)

    def tcp():
        return msgs.pose_from_msg(newest.get())[1]

    try:
        with stack.Stack(profile, overrides, log_dir=tmp_path) as s:
            assert probe.wait_for(["/arm/tcp_pose", "/arm/target_tcp"], timeout=60, abort=s.any_exited), \
                s.last_line("teleop_node") + s.last_line("sim_node")
            end = time.monotonic() + 30
            while _post(url, _body([0, 1, 0], clutch=False)) != 200 and time.monotonic() < end:
                time.sleep(0.2)
            hand0 = np.array([0.0, 1.0, 0.3])
            for axis in range(3):
                d = np.zeros(3)
                d[axis] = 0.04 if axis != 2 else 0.03
                start = tcp()
                for _ in range(5):                              # clutch in at the hand's rest pose
                    _post(url, _body(world_to_unity_pos(hand0)))
                    time.sleep(1 / 60)
                for k in range(60):                             # move over 1 s at 60 Hz
                    _post(url, _body(world_to_unity_pos(hand0 + d * min(1.0, (k + 1) / 30))))
                    time.sleep(1 / 60)
                moved = tcp() - start
                assert moved[axis] > 0.6 * d[axis], (axis, moved)
                assert np.abs(np.delete(moved, axis)).max() < 0.4 * d[axis], (axis, moved)
                for _ in range(3):
                    _post(url, _body(world_to_unity_pos(hand0), clutch=False))
            # feedback arrived and decodes as the app expects
            import bson

            def drain(p):
                out = []
                while True:
                    try:
                        out.append(socks[p].recv(65536))
                    except (BlockingIOError, OSError):
                        return out
            assert len(drain(protocol.PORT_ROBOT_STATE)) > 50  # the buffer may be full of old ones
            time.sleep(0.1)
            state = [bson.decode(d) for d in drain(protocol.PORT_ROBOT_STATE)]
            assert len(state) > 3 and len(state[-1]["rightRobotTCP"]) == 7
            np.testing.assert_allclose(state[-1]["rightRobotTCP"][:3], world_to_unity_pos(tcp()), atol=0.01)
            arrows = [bson.decode(d) for d in drain(protocol.PORT_TACTILE)]
            assert arrows and arrows[-1]["device_id"] == "arm_tactile" and len(arrows[-1]["scale"]) == 3
            assert [bson.decode(d) for d in drain(protocol.PORT_FORCE)][-1]["arrow"]["start"]
            ra, docs = protocol.ImageReassembler(), []
            for d in drain(protocol.PORT_IMAGES):
                doc = ra.feed(d)
                if doc is not None:
                    docs.append(doc)
            assert docs and docs[-1]["images"][0]["image"][:2] == b"\xff\xd8"   # a JPEG
            # bad input: rejected, the robot does not move
            before = tcp()
            bad = [b"{oops", _body([np.nan, 1, 0]).replace(b"NaN", b"NaN"), b"[1,2,3]",
                   json.dumps({"rightHand": {"wristPos": [1, 2], "wristQuat": I_WXYZ}}).encode()]
            for _ in range(10):
                for b in bad:
                    assert _post(url, b) == 400
            np.testing.assert_allclose(tcp(), before, atol=2e-3)
            # a headset that goes silent mid-motion: the arm holds
            for k in range(20):
                _post(url, _body(world_to_unity_pos(hand0 + [0, 0, 0.002 * k])))
                time.sleep(1 / 60)
            time.sleep(0.6)
            held = tcp()
            time.sleep(0.5)
            np.testing.assert_allclose(tcp(), held, atol=1e-3)
            assert s.procs["teleop_node"].poll() is None
    finally:
        probe.close()
        for sck in socks.values():
            sck.close()
