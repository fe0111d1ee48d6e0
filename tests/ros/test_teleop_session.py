"""A teleop session over DDS, as `slowfast teleop --sim` runs it (plus the recorder): an
emulated headset posting the app's JSON at 60 Hz with the clutch held keeps its episode far
past the task's length; its record button starts a bag, its success button saves it and ends
the episode; the reset releases the held clutch (the arm stays put until a fresh press); an
e-stop is told; every one of these reaches the headset as a log line on its UDP log port."""
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from std_msgs.msg import Bool, String

from slowfast_ros import msgs, qos
from slowfast_app import stack
from slowfast_ros.topic_probe import Newest, TopicProbe
from teleop_tactar import protocol
from teleop_tactar.frames import world_to_unity_pos

pytestmark = pytest.mark.dds
I_WXYZ = [1.0, 0.0, 0.0, 0.0]
TASK_SECONDS = 1.0           # the wipe task's scripted length, shortened: the session must outlast it
HAND0 = np.array([0.0, 1.0, 0.3])


class Headset(threading.Thread):
    """Posts the app's JSON at about 60 Hz from the hand state the test sets."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.pos, self.clutch, self.posted = url, HAND0.copy(), False, 0
        self._press: dict = {}
        self._halt = threading.Event()

    def press(self, button: int) -> None:
        self._press[button] = 3            # held for three messages: one rising edge

    def run(self):
        while not self._halt.is_set():
            buttons = [False] * 5
            buttons[protocol.BTN_GRIP] = self.clutch
            for b, n in list(self._press.items()):
                buttons[b] = n > 0
                self._press[b] = n - 1
            body = json.dumps(protocol.hand_json(time.time(), {"right": (world_to_unity_pos(self.pos), I_WXYZ,
                                                                         0.0, buttons)})).encode()
            req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=2):
                    self.posted += 1
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1 / 60)

    def stop(self):
        self._halt.set()
        self.join(timeout=5)


class LogPort:
    """The headset's log port (10003, shifted): every ``text`` received."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.offset = self.sock.getsockname()[1] - protocol.PORT_LOG
        self.lines: list[str] = []

    def wait(self, text: str, timeout: float = 30.0, abort=None) -> bool:
        import bson

        end = time.monotonic() + timeout
        while time.monotonic() < end and not (abort is not None and abort()):
            if any(text in line for line in self.lines):
                return True
            try:
                self.lines.append(bson.decode(self.sock.recv(65536))["text"])
            except (TimeoutError, socket.timeout, BlockingIOError):
                pass
        return any(text in line for line in self.lines)


def wait_until(cond, timeout=30.0, abort=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not (abort is not None and abort()):
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


def test_operator_episode_outlasts_the_task_ends_on_request_and_releases_the_clutch(tmp_path, free_port):
    port = free_port()
    log = LogPort()
    profile = stack.load_profile("sim-teleop")          # what `slowfast teleop --sim` starts ...
    profile.nodes.append(stack.NodeSpec("recorder_node", "slowfast_ros.nodes.recorder_node",
                                        ["recorder_node.yaml"]))   # ... and `slowfast record` beside it
    overrides = {"sim_node": {"camera_hz": 0.0, "episode_seconds": TASK_SECONDS, "perturb": False,
                              "start_delay": 0.2},
                 "teleop_node": {"server.port": port, "udp_port_offset": log.offset, "server.max_rate": 200.0},
                 "recorder_node": {"out_dir": str(tmp_path / "bags"), "topics": ["/arm/tcp_pose"]}}
    probe = TopicProbe({"/arm/tcp_pose": PoseStamped})
    node = probe.node
    events: list[dict] = []
    node.create_subscription(String, "/sim/episode", lambda m: events.append(msgs.json_from_msg(m)), qos.EVENTS)
    estop_pub = node.create_publisher(Bool, "/safety/estop", qos.LATCHED)
    newest = Newest(node, "/arm/tcp_pose", PoseStamped)
    headset = Headset(f"http://127.0.0.1:{port}/unity")

    def pose():
        stamp, pos, _ = msgs.pose_from_msg(newest.get())
        return stamp, pos

    def push(moved, step, start=HAND0, tries=3):
        """Move the hand by ``step`` until ``moved()``: a headset silent past the deadline (a
        loaded machine stalls this process's poster) disengages, and the held clutch then
        re-anchors at the moved hand, so the operator (as a person would, told on the log
        port) pushes on."""
        pos = np.array(start, float)
        for _ in range(tries):
            pos = pos + step
            headset.pos = pos
            if wait_until(moved, 10, gone):
                return True
            log.wait("headset silent", timeout=0.5)      # collects the log port's lines for the message
        return moved()

    def started(k):
        return [e for e in events if e.get("event") == "start" and e.get("episode") == k]

    try:
        with stack.Stack(profile, overrides, log_dir=tmp_path) as s:
            def gone():
                return s.any_exited()

            def why():
                return "".join(s.last_line(n) for n in ("sim_node", "teleop_node", "safety_node", "recorder_node"))

            assert probe.wait_for(["/arm/tcp_pose"], timeout=60, abort=gone), why()
            assert wait_until(lambda: started(0), 30, gone), why()
            headset.start()
            assert wait_until(lambda: headset.posted > 10, 30, gone), why()
            # clutch in and move slowly along +x for three task lengths of sim time
            t0 = started(0)[0]["start_stamp"]
            x0 = pose()[1]
            headset.clutch = True
            assert wait_until(lambda: pose()[0] > t0 + 3 * TASK_SECONDS, 60, gone), why()
            assert push(lambda: pose()[1][0] - x0[0] > 0.02, [0.03, 0.0, 0.0]), \
                ("the operator never moved the arm", pose()[1] - x0, log.lines[-8:], why())
            assert [e["event"] for e in events] == ["start"], "the episode ended under the operator"

            headset.press(protocol.BTN_LOWER)            # right A: record
            assert log.wait("recording episode_0000", abort=gone), (log.lines, why())
            headset.press(protocol.BTN_UPPER)            # right B: success, which also ends the episode
            assert wait_until(lambda: started(1), 30, gone), why()
            (end,) = [e for e in events if e.get("event") == "end"]
            assert end["episode"] == 0 and end["reason"] == "operator"
            for line in ("saved episode_0000 (success)", "episode 0 ended (on request)",
                         "clutch released (arm)", "episode 1 started (ends on your request"):
                assert log.wait(line, abort=gone), (line, log.lines)

            # the clutch is still held and the hand moves: the arm stays at the new episode's home
            t1 = started(1)[0]["start_stamp"]
            assert wait_until(lambda: pose()[0] > t1 + 0.3, 30, gone), why()
            home = pose()[1]
            headset.pos = HAND0 + [0.03, 0.0, 0.06]
            stamp_now = pose()[0]
            assert wait_until(lambda: pose()[0] > stamp_now + 1.0, 30, gone), why()
            np.testing.assert_allclose(pose()[1], home, atol=3e-3)
            # a fresh press moves it again, from where it is
            headset.clutch = False
            n = headset.posted
            assert wait_until(lambda: headset.posted > n + 5, 10, gone)
            headset.clutch = True
            n = headset.posted
            assert wait_until(lambda: headset.posted > n + 5, 10, gone)
            assert push(lambda: pose()[1][2] - home[2] > 0.015, [0.0, 0.0, 0.03], start=headset.pos), \
                (pose(), home, log.lines[-8:])

            # a safety intervention reaches the headset (safety_node's diagnostics, 1 Hz)
            assert wait_until(lambda: estop_pub.get_subscription_count() > 0, 10, gone)
            estop_pub.publish(Bool(data=True))
            assert log.wait("e-stop engaged", abort=gone), (log.lines, why())
            estop_pub.publish(Bool(data=False))
            assert [e["event"] for e in events] == ["start", "end", "start"]
            assert s.procs["teleop_node"].poll() is None and s.procs["sim_node"].poll() is None
    finally:
        headset.stop()
        probe.close()
        log.sock.close()
