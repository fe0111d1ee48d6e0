"""teleop_node's feedback tick without ROS (teleop_tactar.headset_feedback): the rates as whole
divisions of the tick, the headset's address, the robot state, tactile and force arrows and
camera images to the headset (real UDP datagrams on localhost) and to the WebXR pages."""
import socket
from types import SimpleNamespace

import numpy as np
import pytest

from teleop_tactar import protocol
from teleop_tactar.headset_feedback import HeadsetFeedback, every_nth

Q_I = np.array([0.0, 0.0, 0.0, 1.0])


class Pages:
    def __init__(self, clients=1):
        self.clients, self.sent = clients, []

    def broadcast(self, payload):
        self.sent.append(payload)


def _arm(pose_stamp=1.0, tactile=None, wrench=(0.0, 0.0, 10.0, 0.0, 0.0, 0.0)):
    return SimpleNamespace(tcp_pos=np.array([0.4, 0.0, 0.2]), tcp_quat=Q_I, pose_stamp=pose_stamp,
                           tactile=np.zeros((0, 4)) if tactile is None else np.asarray(tactile, float),
                           wrench=np.array(wrench, float))


def _page_state():
    return {"engaged": {"arm": True}, "recorder": "idle"}


@pytest.mark.parametrize("tick_hz,hz,n", [(120.0, 24.0, 5), (120.0, 10.0, 12), (120.0, 500.0, 1), (100.0, 30.0, 3), (120.0, 70.0, 2)])
def test_rates_are_whole_divisions_of_the_tick(tick_hz, hz, n):
    assert every_nth(tick_hz, hz) == n


def test_headset_address_follows_the_hand_messages_unless_fixed():
    h = HeadsetFeedback({"arm": "right"}, 0.08, 120.0, 24.0, 10.0)
    h.heard_from("10.0.0.7")
    h.heard_from("ws:10.0.0.9")                  # a WebXR page is answered over its socket
    assert h.sender.host == "10.0.0.7"
    h.close()
    fixed = HeadsetFeedback({"arm": "right"}, 0.08, 120.0, 24.0, 10.0, headset_host="10.0.0.5")
    fixed.heard_from("10.0.0.7")
    assert fixed.sender.host == "10.0.0.5"
    fixed.close()


def test_page_state_and_arrows_on_every_nth_tick():
    h = HeadsetFeedback({"arm": "right"}, 0.08, 120.0, 40.0, 10.0)      # arrows every 3rd tick
    pages = Pages()
    markers = [[0.01, 0.02, 0.001, 0.0], [np.nan, 0.0, 0.0, 0.0]]         # a lost marker is left out
    states = {"arm": _arm(tactile=markers)}
    for _ in range(6):
        h.tick(states, _page_state, lambda: None, pages)
    assert [p["type"] for p in pages.sent] == ["state", "state"]
    page = pages.sent[0]
    assert page["engaged"] == {"arm": True} and page["recorder"] == "idle"
    assert len(page["tcp"]["right"]) == 7                                 # keyed by the hand, Unity pose
    assert page["tactile"]["arm"] == [[0.01, 0.02, 0.03, 0.02]]           # start xy, end xy (x20 gain)
    assert page["force"]["arm"] == [0.0, 0.0, 10.0]                       # world frame (identity TCP)
    h.close()


def test_no_pose_no_force_and_no_clients_no_broadcast():
    h = HeadsetFeedback({"arm": "right"}, 0.08, 120.0, 120.0, 10.0)
    pages = Pages()
    h.tick({"arm": _arm(pose_stamp=float("nan"))}, _page_state, lambda: None, pages)
    assert pages.sent[0]["tcp"] == {} and pages.sent[0]["force"] == {}
    h.tick({"arm": _arm(wrench=(np.nan,) * 6)}, _page_state, lambda: None, pages)
    assert pages.sent[1]["force"] == {}
    quiet = Pages(clients=0)
    h.tick({"arm": _arm()}, _page_state, lambda: None, quiet)
    assert quiet.sent == []
    h.close()


def test_camera_images_at_their_rate_and_bad_images_skipped():
    pytest.importorskip("cv2")
    h = HeadsetFeedback({"arm": "right"}, 0.08, 120.0, 1.0, 60.0, camera="cam")   # camera every 2nd tick
    pages = Pages()
    rgb = np.zeros((8, 8, 3), np.uint8)
    for _ in range(4):
        h.tick({}, _page_state, lambda: rgb, pages)
    assert [(p["type"], p["id"]) for p in pages.sent] == [("image", "cam")] * 2
    h.tick({}, _page_state, lambda: np.zeros((8, 8), np.uint8), pages)  # odd tick: not even asked
    h.tick({}, _page_state, lambda: np.zeros((8, 8), np.uint8), pages)  # not RGB: skipped

    def bad():
        raise ValueError("not an image")
    h.tick({}, _page_state, lambda: None, pages)
    h.tick({}, _page_state, bad, pages)
    assert len(pages.sent) == 2
    h.close()


def test_datagrams_reach_the_headset_ports():
    socks = {}
    try:
        for port in (protocol.PORT_ROBOT_STATE, protocol.PORT_TACTILE, protocol.PORT_FORCE):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.settimeout(2.0)
            socks[port] = s
        # one offset cannot line three free ports up: send each kind to its own socket's port
        h = HeadsetFeedback({"arm": "left"}, 0.08, 120.0, 120.0, 1.0, headset_host="127.0.0.1")
        for port, s in socks.items():
            h.sender.port_offset = s.getsockname()[1] - port
            h.tick({"arm": _arm(tactile=[[0.0, 0.0, 0.001, 0.0]])}, _page_state, lambda: None, Pages(0))
            assert s.recv(65536)
        assert h.sender.sent["robot_state"] == 3 and h.sender.sent["tactile"] == 3 and h.sender.sent["force"] == 3
        h.close()
    finally:
        for s in socks.values():
            s.close()
