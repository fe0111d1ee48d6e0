"""recorder_node's decisions without ROS (teleop_tactar.recorder_session): commands and sim
episode events through the writer thread into real bags, the episode events told once,
drops when the queue is full, late starts not recorded, an episode whose end never came
saved without an outcome, and an error told once."""
import time

import pytest

from teleop_tactar import bag as B
from teleop_tactar.recorder import EpisodeRecorder
from teleop_tactar.recorder_session import EPISODE_TOPIC, RecorderSession

STRING_A = b"\x00\x01\x00\x00\x02\x00\x00\x00a\x00"     # std_msgs/String "a" (CDR)


class Out:
    def __init__(self):
        self.events, self.states = [], []

    def publish_event(self, event):
        self.events.append(event)

    def publish_state(self, progress):
        self.states.append(progress)


class Log:
    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(("info", text))

    def warning(self, text):
        self.lines.append(("warning", text))

    def error(self, text):
        self.lines.append(("error", text))


class Clock:
    ns = 100_000_000_000

    def __call__(self):
        return self.ns


def _session(tmp_path, queue_size=1000, task="wipe"):
    out, log, clock = Out(), Log(), Clock()
    s = RecorderSession(EpisodeRecorder(tmp_path, min_free_mb=0.0), task, queue_size, clock, out, log)
    return s, out, log, clock


def _drain(s, timeout=5.0):
    t_end = time.monotonic() + timeout
    while not s.q.empty():
        assert time.monotonic() < t_end, "the writer did not drain its queue"
        time.sleep(0.01)
    time.sleep(0.2)   # the item taken last is being handled


def test_commands_record_an_episode_and_tell_each_event_once(tmp_path):
    s, out, log, clock = _session(tmp_path)
    s.start()
    try:
        s.topic("/x", "std_msgs/msg/String", [])
        s.command({"cmd": "start", "source": "teleop"})
        _drain(s)
        for i in range(5):
            s.message("/x", STRING_A, clock.ns + i)
        s.command({"cmd": "success", "source": "teleop"})
        s.command({"cmd": "bogus"})
        _drain(s)
    finally:
        s.close()
    assert [(e["event"], e["episode"], e["outcome"]) for e in out.events] == [
        ("started", "episode_0000", None), ("saved", "episode_0000", "success")]
    assert ("warning", "recorder/command: unknown command 'bogus'") in log.lines
    folder = tmp_path / "episode_0000"
    assert len(list(B.iter_bag(folder))) == 5
    assert B.open_bag(folder).metadata["custom_data"]["task"] == "wipe"    # the node's task when none is given
    assert out.states[-1]["state"] == "idle" and "queued" in out.states[-1]


def test_a_full_queue_drops_messages_and_counts_them(tmp_path):
    s, _, _, _ = _session(tmp_path, queue_size=10)    # writer not started: nothing is taken off
    for i in range(15):
        s.message("/cam", b"x", i)
    assert s.q.qsize() == 10 and s.rec.drops["/cam"] == 5


def test_sim_episodes_in_their_bags_late_starts_skipped_and_a_missing_end_saved_without_outcome(tmp_path):
    s, out, log, clock = _session(tmp_path)
    t = clock.ns * 1e-9
    s.episode({"event": "start", "episode": 1, "start_stamp": t - 2.0}, lambda: pytest.fail("not asked"))
    assert log.lines == [("warning", "episode 1 was already running: not recorded")] and s.q.empty()
    s.start()
    try:
        s.topic("/x", "std_msgs/msg/String", [])
        s.episode({"event": "start", "episode": 2, "start_stamp": t, "task": "lift", "seed": 7},
                  lambda: (b"start-event", clock.ns, []))
        _drain(s)
        s.message("/x", STRING_A, clock.ns + 1)
        s.episode({"event": "start", "episode": 3, "start_stamp": t}, lambda: (b"start-3", clock.ns + 2, []))
        _drain(s)
        s.episode({"event": "end", "episode": 3, "metrics": {"success": False}}, lambda: (b"end-3", clock.ns + 3, []))
        s.episode({"event": "paused"}, lambda: pytest.fail("not asked"))
        _drain(s)
    finally:
        s.close()
    assert [(e["event"], e["outcome"]) for e in out.events] == [
        ("started", None), ("saved", None), ("started", None), ("saved", "failure")]
    assert any(level == "warning" and "its end event never came" in text for level, text in log.lines)
    first = [(m[0], m[2]) for m in B.iter_bag(tmp_path / "episode_0000")]
    assert first == [(EPISODE_TOPIC, b"start-event"), ("/x", STRING_A)]
    meta = B.open_bag(tmp_path / "episode_0000").metadata["custom_data"]
    assert meta["task"] == "lift" and meta["seed"] == "7" and "success" not in meta
    second = [m[2] for m in B.iter_bag(tmp_path / "episode_0001") if m[0] == EPISODE_TOPIC]
    assert second == [b"start-3", b"end-3"]                           # the start first, the end last
    assert B.open_bag(tmp_path / "episode_0001").metadata["custom_data"]["success"] == "False"


def test_discard_removes_the_episode(tmp_path):
    s, out, _, _ = _session(tmp_path)
    s.start()
    try:
        s.command({"cmd": "start"})
        s.command({"cmd": "discard"})
        s.command({"cmd": "discard"})                                   # nothing left: nothing told
        _drain(s)
    finally:
        s.close()
    assert [e["event"] for e in out.events] == ["started", "discarded"]
    assert not (tmp_path / "episode_0000").exists()


def test_an_error_is_told_once(tmp_path):
    s, out, log, _ = _session(tmp_path)
    s.start()
    try:
        s.command({"cmd": "start"})
        _drain(s)
        s.rec.error = "disk trouble"                                    # seen on each idle flush
        time.sleep(0.3)
    finally:
        s.close()
    assert [e["event"] for e in out.events] == ["started", "error"]
    assert out.events[1]["text"] == "disk trouble"
    assert log.lines.count(("error", "disk trouble")) == 1
