"""teleop_node's decisions without ROS (teleop_tactar.session): forwarding only while active,
clutch releases on transitions and episode events, the recorder and sim episode commands of
the buttons, the operator's lines (told once, latched replays not told again), the silence
deadline and the diagnostics values."""
from types import SimpleNamespace

import numpy as np
import pytest

from teleop_tactar import protocol
from teleop_tactar.protocol import BTN_GRIP, BTN_LOWER, BTN_UPPER, parse_hands
from teleop_tactar.retarget import RetargetConfig
from teleop_tactar.session import TeleopSession

I_WXYZ = [1.0, 0.0, 0.0, 0.0]
TCP = np.array([0.4, 0.0, 0.2])
T0 = 1000.0       # the session's start (node clock)


def _frame(pos=(0.0, 1.0, 0.3), clutch=True, upper=False, lower=False):
    buttons = [False] * 5
    buttons[BTN_GRIP], buttons[BTN_UPPER], buttons[BTN_LOWER] = clutch, upper, lower
    return parse_hands(protocol.hand_json(0.0, {"right": (list(pos), I_WXYZ, 0.0, buttons)}))


def _states(pose_stamp=5.0, pos=TCP):
    return lambda: {"arm": SimpleNamespace(tcp_pos=np.array(pos), tcp_quat=np.array([0.0, 0.0, 0.0, 1.0]),
                                           pose_stamp=pose_stamp)}


class Out:
    def __init__(self):
        self.lines, self.targets, self.commands, self.infos = [], [], [], []

    def say(self, text):
        self.lines.append(text)

    def publish_targets(self, targets):
        self.targets.append(targets)

    def publish_command(self, to, cmd):
        self.commands.append((to, cmd))

    def info(self, text):
        self.infos.append(text)


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def _session(**kw):
    out, clock = Out(), Clock()
    s = TeleopSession({"arm": "right"}, kw.pop("retarget", RetargetConfig()), kw.pop("deadline", 0.25),
                      kw.pop("safety_log", ["estop", "workspace"]), T0, out, monotonic=clock)
    return s, out, clock


def test_inactive_forwards_nothing_and_transitions_release_the_clutch():
    s, out, _ = _session()
    s.on_frame(_frame(), _states())
    assert out.targets == [] and s.frames_inactive == 1 and s.published == 0
    s.activate()
    assert out.lines == []                               # the first activation is not told
    s.on_frame(_frame(), _states())
    assert len(out.targets) == 1 and s.published == 1 and len(s.latency_ms) == 1
    np.testing.assert_allclose(out.targets[0]["arm"].pos, TCP, atol=1e-9)   # clutch-in: at the TCP
    s.deactivate()
    assert out.lines == ["teleop inactive: no target forwarded, the arm holds"]
    assert not s.teleop.arms["arm"].engaged
    s.on_frame(_frame(), _states())
    assert len(out.targets) == 1 and s.frames_inactive == 2
    s.activate()
    assert out.lines[-1] == "teleop active: press the clutch to drive"
    s.on_frame(_frame((0.0, 1.0, 0.31)), _states())      # still held across the pause: moves nothing
    assert len(out.targets) == 1
    s.on_frame(_frame(clutch=False), _states())
    s.on_frame(_frame(), _states())                      # a fresh press drives again
    assert len(out.targets) == 2


def test_an_arm_without_a_measured_pose_gets_no_target():
    s, out, _ = _session()
    s.activate()
    s.on_frame(_frame(), _states(pose_stamp=float("nan")))
    assert out.targets == [] and s.published == 0


def test_divergence_is_told_once_per_onset():
    s, out, _ = _session(retarget=RetargetConfig(max_divergence=0.05))
    s.activate()
    s.on_frame(_frame(), _states())
    s.on_frame(_frame((0.0, 1.0, 0.5)), _states())       # 0.2 m forward: over the limit
    s.on_frame(_frame((0.0, 1.0, 0.5)), _states())
    assert out.lines == ["arm: target over 0.05 m from the arm: tracking stopped; let go and press the clutch again"]
    assert s.diagnostics({})[0]["arm/diverged"] == 1


def test_buttons_command_the_recorder_and_an_outcome_ends_an_operator_mode_episode():
    s, out, _ = _session()
    s.activate()
    s.on_frame(_frame(clutch=False, lower=True), _states())        # right lower: start recording
    assert out.commands == [("recorder", {"cmd": "start", "source": "teleop"})]
    s.on_episode({"event": "start", "episode": 7, "episode_end": "task", "stamp": T0})
    s.on_frame(_frame(clutch=False, upper=True), _states())        # success, sim in its task mode
    assert out.commands[-1] == ("recorder", {"cmd": "success", "source": "teleop"})
    s.on_episode({"event": "start", "episode": 8, "episode_end": "operator", "stamp": T0})
    s.on_frame(_frame(clutch=False), _states())
    s.on_frame(_frame(clutch=False, upper=True), _states())
    assert out.commands[-2:] == [("recorder", {"cmd": "success", "source": "teleop"}),
                                 ("sim", {"cmd": "end", "episode": 8, "source": "success"})]
    assert out.infos[-1] == "episode 8: end requested (success)"


def test_the_pages_new_episode_button():
    s, out, _ = _session()
    s.page_episode("end")
    assert out.lines == ["no sim episode to end"] and out.commands == []
    s.on_episode({"event": "start", "episode": 2, "episode_end": "task"})
    s.page_episode("end")
    assert out.lines[-1] == "episode 2 ends at the task's length (the sim is not in its operator mode)"
    assert out.commands == []
    s.on_episode({"event": "start", "episode": 3, "episode_end": "operator"})
    s.page_episode("end")                                          # not recording: just the end
    assert out.commands == [("sim", {"cmd": "end", "episode": 3, "source": "page"})]
    s.on_recorder_state({"state": "recording", "line": "REC episode_0003"})
    assert s.page_state()["recorder"] == "REC episode_0003"
    s.page_episode("end")                                          # recording: saved first
    assert out.commands[-2:] == [("recorder", {"cmd": "stop", "source": "teleop"}),
                                 ("sim", {"cmd": "end", "episode": 3, "source": "page"})]


def test_episode_events_release_a_held_clutch_and_latched_ones_are_not_told_again():
    s, out, _ = _session()
    s.activate()
    s.on_frame(_frame(), _states())
    s.on_episode({"event": "end", "episode": 1, "reason": "operator", "stamp": T0 + 5.0})
    assert out.lines == ["episode 1 ended (on request)",
                         "episode reset: clutch released (arm); let go and press it again to move"]
    assert not s.teleop.arms["arm"].engaged
    s.on_episode({"event": "paused", "episode": 1})                # neither start nor end: ignored
    s.on_episode({"event": "start", "episode": 9, "stamp": T0 - 30.0, "hold_stamp": T0 - 30.0})
    assert len(out.lines) == 2                                     # a latched start: state, no line
    assert s.episode["episode"] == 9
    s.on_episode({"event": "start", "episode": 10, "hold_stamp": T0 - 0.5})
    assert out.lines[-1] == "episode 10 started"


def test_a_clutch_pressed_on_the_reset_robot_survives_late_news_of_the_reset():
    s, out, _ = _session()
    s.activate()
    s.on_frame(_frame(), _states(pose_stamp=T0 + 10.0))            # clutched on a pose measured after the reset
    s.on_episode({"event": "start", "episode": 4, "stamp": T0 + 11.0, "hold_stamp": T0 + 9.0})
    assert s.teleop.arms["arm"].engaged
    assert out.lines == ["episode 4 started"]


def test_recorder_events_and_safety_interventions_become_lines():
    s, out, _ = _session()
    s.on_recorder_event({"event": "saved", "episode": "episode_0001", "outcome": "success", "stamp": T0 - 5})
    s.on_recorder_event({"event": "unknown", "stamp": T0})
    assert out.lines == []                                         # a latched event; an unknown one
    s.on_recorder_event({"event": "saved", "episode": "episode_0002", "outcome": "failure", "stamp": T0})
    assert out.lines == ["saved episode_0002 (failure)"]
    s.on_safety_values({"arm/interventions/estop": "2", "arm/interventions/speed": "1"})   # baseline
    s.on_safety_values({"arm/interventions/estop": "3", "arm/interventions/speed": "9"})   # speed not chosen
    s.on_safety_values({"arm/interventions/estop": "4"})                                   # the same hold
    assert out.lines[1:] == ["safety: arm: e-stop engaged: holding"]
    assert s.said == 2


def test_unknown_safety_reasons_are_refused():
    with pytest.raises(ValueError, match="unknown reason"):
        _session(safety_log=["estop", "bogus"])


def test_silence_disengages_and_diagnostics_say_so():
    s, out, clock = _session(deadline=0.25)
    s.activate()
    s.on_frame(_frame(), _states())
    clock.t = 0.2
    assert s.check_deadline() and s.page_state()["engaged"] == {"arm": True}
    clock.t = 0.3
    said = s.said
    assert not s.check_deadline()
    assert s.page_state()["engaged"] == {"arm": False}
    assert s.said == said + 1 and "headset silent for over 0.25 s" in out.lines[-1]
    clock.t = 0.6
    assert not s.check_deadline() and s.said == said + 1      # told once per loss, not per check
    values, level, message = s.diagnostics({"udp_errors": 0})
    assert list(values)[:6] == ["active", "frames_while_inactive", "published", "deadline_timeouts",
                                "log_lines", "udp_errors"]
    assert values["deadline_timeouts"] == 1 and values["arm/engaged"] is False and values["arm/enabled"]
    assert "latency_ms_p99" in values and (level, message) == ("ok", "")
    s.deactivate()
    assert s.diagnostics({})[1:] == ("warn", "inactive: no target forwarded")
