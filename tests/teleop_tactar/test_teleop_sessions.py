"""Teleop sessions without ROS: the sim's operator episode mode does not end at the task's
length and ends on the operator's request or the limit; an episode reset releases a held
clutch and the next motion needs a fresh press; the operator's log lines (episode, clutch,
recorder, safety interventions) and their UDP datagrams on the headset's log port."""
import json
import socket

import numpy as np
import pytest

from sim.episodes import EpisodeEnd
from teleop_tactar import notices, protocol
from teleop_tactar.feedback import FeedbackSender
from teleop_tactar.protocol import BTN_GRIP, BTN_UPPER, parse_hands
from teleop_tactar.retarget import BUTTON_COMMANDS, EPISODE_END_COMMANDS, RetargetConfig, Teleoperator

I_WXYZ = [1.0, 0.0, 0.0, 0.0]


def _frame(pos, clutch=True, upper=False):
    buttons = [False] * 5
    buttons[BTN_GRIP] = clutch
    buttons[BTN_UPPER] = upper
    return parse_hands(protocol.hand_json(0.0, {"right": (pos, I_WXYZ, 0.0, buttons)}))


def test_task_mode_ends_at_the_task_length_and_ignores_requests():
    e = EpisodeEnd("task")
    e.begin(0)
    assert e.check(1.0, task_done=False) is None
    assert not e.request(0)
    assert e.check(1.0, task_done=False) is None
    assert e.check(8.0, task_done=True) == "task_length"


def test_operator_mode_outlasts_the_task_and_ends_on_request_or_limit():
    e = EpisodeEnd("operator", limit_s=600.0)
    e.begin(3)
    for t in (8.0, 60.0, 599.0):                    # past the task's length: goes on
        assert e.check(t, task_done=True) is None
    assert not e.request(2)                         # a request for the previous episode is stale
    assert e.check(100.0, task_done=True) is None
    assert e.request(3)
    assert e.check(100.0, task_done=True) == "operator"
    e.begin(4)                                      # the next episode starts clean
    assert e.check(0.1, task_done=False) is None
    assert e.request(None)                          # "whichever is running"
    assert e.check(0.2, task_done=False) == "operator"
    e.begin(5)
    assert e.check(600.0, task_done=True) == "time_limit"


@pytest.mark.parametrize("kw", [{"mode": "forever"}, {"limit_s": 0.0}, {"limit_s": -1.0}])
def test_episode_end_refuses_bad_settings_with_one_line(kw):
    with pytest.raises(ValueError, match="episode"):
        EpisodeEnd(**{"mode": "operator", **kw})


def test_reset_with_the_clutch_held_releases_it_until_a_fresh_press():
    t = Teleoperator({"arm": "right"}, RetargetConfig())
    tcp = {"arm": (np.array([0.4, 0.0, 0.2]), np.array([0.0, 0.0, 0.0, 1.0]))}
    targets, _ = t.on_frame(_frame([0.0, 1.0, 0.3]), tcp, 0.0)
    assert "arm" in targets and t.arms["arm"].engaged
    assert t.release() == ["arm"]                   # the operator must be told
    assert t.release() == []                        # once: a second event of the same reset is silent
    home = {"arm": (np.array([0.3, 0.0, 0.3]), np.array([0.0, 0.0, 0.0, 1.0]))}
    for k in range(5):                              # still held, hand moving: nothing moves
        targets, _ = t.on_frame(_frame([0.0, 1.0, 0.3 + 0.01 * k]), home, 0.01 * k)
        assert targets == {} and not t.arms["arm"].engaged
    t.on_frame(_frame([0.0, 1.0, 0.35], clutch=False), home, 0.1)
    targets, _ = t.on_frame(_frame([0.0, 1.0, 0.35]), home, 0.11)     # a fresh press: from the new pose
    np.testing.assert_allclose(targets["arm"].pos, home["arm"][0], atol=1e-9)
    # a reset while the clutch is not held: nothing to tell, and the next press works at once
    t.on_frame(_frame([0.0, 1.0, 0.35], clutch=False), home, 0.2)
    assert t.release() == []
    targets, _ = t.on_frame(_frame([0.0, 1.0, 0.35]), home, 0.21)
    assert "arm" in targets


def test_late_news_of_a_reset_leaves_a_clutch_pressed_on_the_reset_robot():
    t = Teleoperator({"arm": "right"}, RetargetConfig())
    tcp = {"arm": (np.array([0.3, 0.0, 0.3]), np.array([0.0, 0.0, 0.0, 1.0]))}
    t.on_frame(_frame([0.0, 1.0, 0.3]), tcp, 0.0, {"arm": 105.0})      # clutched in on a pose from t=105
    assert t.release(reset_stamp=100.0) == [] and t.arms["arm"].engaged   # the reset was at t=100
    assert "arm" in t.on_frame(_frame([0.0, 1.0, 0.31]), tcp, 0.01, {"arm": 105.1})[0]
    assert t.release(reset_stamp=110.0) == ["arm"]                     # a reset after the clutch-in


def test_outcome_buttons_end_the_episode_and_record_start_does_not():
    assert BUTTON_COMMANDS[("right", BTN_UPPER)] == "success"
    assert set(EPISODE_END_COMMANDS) == {"success", "failure", "discard"}
    t = Teleoperator({"arm": "right"}, RetargetConfig())
    _, cmds = t.on_frame(_frame([0, 1, 0], upper=True), {"arm": None}, 0.0)
    assert cmds == ["success"]


def test_log_lines_for_episodes_clutch_and_recorder():
    start = {"event": "start", "episode": 4, "episode_end": "operator", "max_seconds": 1800.0}
    assert notices.episode_started(start) == "episode 4 started (ends on your request or after 30 min)"
    assert notices.episode_started({"event": "start", "episode": 0, "episode_end": "task",
                                    "max_seconds": 8.0}) == "episode 0 started"
    end = {"event": "end", "episode": 4, "reason": "time_limit", "metrics": {"success": False}}
    assert notices.episode_ended(end) == "episode 4 ended (time limit reached); the sim's task check failed"
    assert "clutch released (arm)" in notices.clutch_released(["arm"])
    assert notices.recorder_event({"event": "started", "episode": "episode_0002"}) == "recording episode_0002"
    assert notices.recorder_event({"event": "saved", "episode": "episode_0002", "outcome": "success"}) == \
        "saved episode_0002 (success)"
    assert notices.recorder_event({"event": "saved", "episode": "episode_0002", "outcome": None}) == \
        "saved episode_0002"
    assert notices.recorder_event({"event": "discarded", "episode": "e"}) == "discarded e"
    assert notices.recorder_event({"event": "error", "text": "disk full"}) == "recorder: disk full"
    assert notices.recorder_event({"event": "whatever"}) is None


def test_safety_interventions_are_told_once_per_onset():
    w = notices.InterventionWatch()
    assert w.update({"arm/interventions/force_limit": "0", "arm/interventions/no_command": "50"}) == []
    # counts from before the operator joined set the baseline
    assert w.update({"arm/interventions/force_limit": "0", "arm/interventions/no_command": "250"}) == []
    lines = w.update({"arm/interventions/force_limit": "12", "arm/interventions/estop": "0"})
    assert lines == ["safety: arm: force limit: backing off"]
    assert w.update({"arm/interventions/force_limit": "40"}) == []      # the same hold goes on: one line
    assert w.update({"arm/interventions/force_limit": "40"}) == []      # it ended
    assert w.update({"arm/interventions/force_limit": "41"}) == ["safety: arm: force limit: backing off"]
    assert w.update({"arm/interventions/estop": "5", "rate_hz": "200"}) == ["safety: arm: e-stop engaged: holding"]
    with pytest.raises(ValueError, match="unknown reason"):
        notices.InterventionWatch(["force_limit", "gremlins"])


def test_log_line_reaches_a_socket_where_the_headset_listens():
    # the app listens on 10003 at the address its hand messages come from; shifted to a free port
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5.0)
    offset = rx.getsockname()[1] - protocol.PORT_LOG
    fb = FeedbackSender(port_offset=offset)
    try:
        fb.log("dropped: no headset address yet")
        assert fb.sent["log"] == 0
        fb.host = "127.0.0.1"                          # what teleop_node sets from the first hand message
        fb.log("episode 1 started")
        import bson

        assert bson.decode(rx.recv(65536)) == {"text": "episode 1 started"}
        assert fb.sent["log"] == 1
    finally:
        fb.close()
        rx.close()


def test_page_episode_command_reaches_the_handler_and_bad_ones_are_counted(free_port):
    import asyncio

    import aiohttp

    from teleop_tactar.server import ServerConfig, TeleopServer

    got = []
    srv = TeleopServer(ServerConfig(port=free_port()), lambda f, c: None, None, got.append).start()

    async def talk():
        async with aiohttp.ClientSession() as s, s.ws_connect(f"ws://127.0.0.1:{srv.port}/ws") as ws:
            await ws.send_str(json.dumps({"type": "episode", "cmd": "end"}))
            await ws.send_str(json.dumps({"type": "episode", "cmd": "explode"}))
            for _ in range(200):
                if got and srv.counters["rejected/bad_command"]:
                    break
                await asyncio.sleep(0.01)

    try:
        asyncio.run(talk())
    finally:
        srv.stop()
    assert got == ["end"] and srv.counters["rejected/bad_command"] == 1
