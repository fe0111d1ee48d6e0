"""The WebXR page in headless Chromium (the system browser, driven by Playwright): it loads
from the teleop server, connects its WebSocket, the keyboard fallback (clutch + forward)
moves the simulated robot along +x, feedback (robot state, tactile and force arrows, camera
images) arrives, the page's Record button reaches recorder/command, and its New episode
button resets the sim, told in the page's log."""
import shutil
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from std_msgs.msg import String

from slowfast_ros import msgs, qos
from slowfast_app import stack
from slowfast_ros.topic_probe import Newest, TopicProbe

pytestmark = pytest.mark.dds
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.mark.skipif(not shutil.which("chromium") and not __import__("os").path.exists(CHROMIUM),
                    reason="no system Chromium")
def test_webxr_page_round_trip_in_headless_chromium(tmp_path, free_port):
    from playwright.sync_api import sync_playwright

    port = free_port()
    profile = stack.load_profile("sim-teleop")          # what `slowfast teleop --sim` starts
    overrides = {"sim_node": {"camera_hz": 10.0, "camera_width": 64, "camera_height": 48, "episode_seconds": 300.0,
                              "perturb": False, "start_delay": 0.2},
                 "teleop_node": {"server.port": port}}
    probe = TopicProbe({"/arm/tcp_pose": PoseStamped, "/arm/target_tcp": PoseStamped})
    node = probe.node
    commands = []
    node.create_subscription(String, "/recorder/command", lambda m: commands.append(msgs.json_from_msg(m)),
                             qos.COMMAND)

    newest = Newest(node, "/arm/tcp_pose", PoseStamped)

    def tcp():
        return msgs.pose_from_msg(newest.get())[1]

    try:
        with stack.Stack(profile, overrides, log_dir=tmp_path) as s, sync_playwright() as pw:
            assert probe.wait_for(["/arm/tcp_pose", "/arm/target_tcp"], timeout=60, abort=s.any_exited), \
                s.last_line("teleop_node") + s.last_line("sim_node")
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = browser.new_page()
                for _ in range(50):                                   # the server may still be starting
                    try:
                        page.goto(f"http://127.0.0.1:{port}/", timeout=5000)
                        break
                    except Exception:  # noqa: BLE001
                        time.sleep(0.2)
                page.wait_for_function("window.slowfast && window.slowfast.connected", timeout=15000)
                page.wait_for_function("window.slowfast.states > 5 && window.slowfast.tactile > 0 "
                                       "&& window.slowfast.force > 0 && window.slowfast.images > 0", timeout=15000)
                start = tcp()
                page.keyboard.down(" ")                               # clutch
                time.sleep(0.3)
                page.keyboard.down("w")                               # forward: robot +x
                time.sleep(0.8)
                page.keyboard.up("w")
                time.sleep(0.4)
                page.keyboard.up(" ")
                moved = tcp() - start
                assert moved[0] > 0.03 and abs(moved[1]) < 0.02 and abs(moved[2]) < 0.02, moved
                page.click("button[data-cmd=start]")
                end = time.monotonic() + 5
                while not commands and time.monotonic() < end:
                    time.sleep(0.05)
                assert commands and commands[0]["cmd"] == "start"
                assert page.evaluate("window.slowfast.sent") > 30
                page.click("#episode")                                # New episode: the sim resets
                page.wait_for_function("window.slowfast.logs.some((l) => l.includes('episode 0 ended (on request)'))"
                                       " && window.slowfast.logs.some((l) => l.includes('episode 1 started'))",
                                       timeout=30000)
                assert "episode 1 started" in page.inner_text("#log")
            finally:
                browser.close()
            assert s.procs["teleop_node"].poll() is None
    finally:
        probe.close()
