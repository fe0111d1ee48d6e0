"""One operator's teleop session: what teleop_node decides, without ROS and without sockets,
so that it can be tested on its own. The node feeds in what it hears (hand messages, sim
episode events, the recorder's state and events, the safety filter's diagnostics values,
lifecycle transitions) and the session answers through :class:`Outputs`: targets to publish,
recorder and sim episode commands, lines for the operator.

Forwarding: each hand message is retargeted (:class:`teleop_tactar.retarget.Teleoperator`:
clutch, relative) against the arms' latest measured poses; the targets go out at once. An
arm whose target diverged from its TCP is told to the operator once per onset. A headset
silent for the deadline disengages every arm (:meth:`TeleopSession.check_deadline`, from the
feedback thread).

Episodes: an outcome button (success, failure, discard) or the page's "New episode" button
also asks the sim to end its episode; a sim in its operator mode honours it, one in its task
mode ignores it, so the session only asks one in its operator mode (and tells the operator
why not otherwise). The page's button stops a running recording first: the bag must not run
across the reset. Every episode end or start releases every clutch explicitly: the robot
moved under the hand, and a clutch still held moves nothing until it is let go and pressed
again (a clutch pressed on the robot as it is after the reset, news of which came late,
stays), and the operator is told.

Lifecycle: inactive, a hand message moves nothing (it is counted); activation and
deactivation both release every clutch (a clutch held across the pause moves nothing until
pressed again) and wait for a message being forwarded, so that none is forwarded after a
deactivation returns.

Events stamped more than a second before the session started are latched ones from before
it (a late joiner's replay): they update the state but are not told again.

Three threads call in (the ROS executor, the server's, the feedback loop's): ``_lock`` guards
the retargeting state, ``_forward`` keeps a message's forwarding and a transition apart.
"""
from __future__ import annotations

import threading
import time
from typing import Protocol

import numpy as np

from . import notices
from .retarget import EPISODE_END_COMMANDS, RetargetConfig, Teleoperator

#: events stamped this long (s) before the session started are latched replays, not news
LATCHED_AGE = 1.0
#: hand-message latencies kept for the diagnostics' percentile
LATENCY_WINDOW = 2000


class Outputs(Protocol):
    """Where a session's decisions go (teleop_node: its publishers, the headset and its log)."""

    def say(self, text: str) -> None: ...                       # a line for the operator
    def publish_targets(self, targets: dict) -> None: ...       # {arm: retarget.Target}
    def publish_command(self, to: str, cmd: dict) -> None: ...  # JSON to "recorder" or "sim" (episodes)
    def info(self, text: str) -> None: ...                      # the node's own log


def _stamp(ev: dict) -> float | None:
    s = ev.get("stamp")
    return float(s) if isinstance(s, (int, float)) else None


class TeleopSession:
    def __init__(self, arm_hands: dict, retarget: RetargetConfig, deadline: float, safety_log,
                 started_at: float, out: Outputs, monotonic=time.monotonic):
        self.teleop = Teleoperator(arm_hands, retarget, deadline)
        self.retarget = retarget
        self.interventions = notices.InterventionWatch([r for r in safety_log if r])
        self.started_at = started_at
        self.out = out
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._forward = threading.Lock()
        self.active = False
        self._deactivated_once = False
        self.frames_inactive = 0
        self.published = 0
        self.said = 0
        self.latency_ms: list[float] = []
        self.episode: dict = {}             # the running sim episode's start event ({} = none seen)
        self.recording = False
        self.recorder_text = ""
        self._diverged = {a: 0 for a in arm_hands}   # each arm's divergence count last told

    def _say(self, text: str) -> None:
        self.said += 1
        self.out.say(text)

    def _latched(self, stamp: float | None) -> bool:
        return stamp is not None and stamp < self.started_at - LATCHED_AGE

    # ------------------------------------------------------------ lifecycle

    def activate(self) -> None:
        with self._forward, self._lock:
            self.teleop.release()
            self.active = True
        if self._deactivated_once:
            self._say("teleop active: press the clutch to drive")

    def deactivate(self) -> None:
        with self._forward, self._lock:   # waits for a message being forwarded: none after this
            self.active = False
            self.teleop.release()
        self._deactivated_once = True
        self._say("teleop inactive: no target forwarded, the arm holds")

    # ------------------------------------------------------------ hand messages

    def on_frame(self, frame, arm_states) -> None:
        """A hand message (protocol.HandFrame); ``arm_states()``: {arm: the arm's latest state,
        with ``tcp_pos``, ``tcp_quat`` and ``pose_stamp`` (NaN = no pose yet)}."""
        with self._forward:
            if not self.active:
                self.frames_inactive += 1   # inactive: the hand moves nothing
                return
            t_in = time.perf_counter()
            snap = arm_states()
            with self._lock:
                tcp = {a: (s.tcp_pos, s.tcp_quat) if np.isfinite(s.pose_stamp) else None for a, s in snap.items()}
                targets, commands = self.teleop.on_frame(frame, tcp, self._monotonic(),
                                                         {a: s.pose_stamp for a, s in snap.items()})
                diverged = [a for a, r in self.teleop.arms.items() if r.diverged != self._diverged[a]]
                for a in diverged:
                    self._diverged[a] = self.teleop.arms[a].diverged
            if targets:
                self.out.publish_targets(targets)
                self.published += 1
                self.latency_ms.append((time.perf_counter() - t_in) * 1e3)
                del self.latency_ms[:-LATENCY_WINDOW]
            for cmd in commands:
                self.page_command(cmd)
            for a in diverged:
                self._say(notices.diverged(a, self.retarget.max_divergence))

    def check_deadline(self) -> bool:
        """The silence deadline (``Teleoperator.check_deadline``) at the current time; the
        operator is told when it disengaged a held clutch (their hand may have moved meanwhile,
        and the arm then follows from where it is)."""
        with self._lock:
            before = self.teleop.timeouts
            live = self.teleop.check_deadline(self._monotonic())
            lost = self.teleop.timeouts > before
        if lost:
            self._say(notices.headset_silent(self.teleop.deadline))
        return live

    def page_state(self) -> dict:
        """The session's part of the WebXR page's state message."""
        return {"engaged": {a: r.engaged for a, r in self.teleop.arms.items()}, "recorder": self.recorder_text}

    # ------------------------------------------------------------ commands

    def page_command(self, cmd: str) -> None:
        """A recorder command (a headset button or the page's); an outcome also ends the
        sim episode when the sim runs in its operator mode."""
        self.out.publish_command("recorder", {"cmd": cmd, "source": "teleop"})
        self.out.info(f"recorder command: {cmd}")
        if cmd in EPISODE_END_COMMANDS and self.episode.get("episode_end") == "operator":
            self._request_episode_end(cmd)

    def page_episode(self, cmd: str) -> None:
        """The page's "New episode" button (``cmd`` "end")."""
        ep = self.episode
        if not ep:
            self._say("no sim episode to end")
            return
        if ep.get("episode_end") != "operator":
            self._say(f"episode {ep.get('episode')} ends at the task's length (the sim is not in its operator mode)")
            return
        if self.recording:   # the bag must not run across the reset: saved, without an outcome
            self.out.publish_command("recorder", {"cmd": "stop", "source": "teleop"})
        self._request_episode_end("page")

    def _request_episode_end(self, why: str) -> None:
        episode = self.episode.get("episode")
        self.out.publish_command("sim", {"cmd": "end", "episode": episode, "source": why})
        self.out.info(f"episode {episode}: end requested ({why})")

    # ------------------------------------------------------------ events

    def on_episode(self, ev: dict) -> None:
        """A ``sim/episode`` event: a start or an end releases every clutch."""
        if ev.get("event") not in ("start", "end"):
            return
        start = ev["event"] == "start"
        stamp = _stamp({"stamp": ev.get("hold_stamp")} if start else ev)
        with self._lock:
            released = self.teleop.release(stamp)
            if start:
                self.episode = ev
        if not self._latched(stamp):
            self._say(notices.episode_started(ev) if start else notices.episode_ended(ev))
        if released:
            self._say(notices.clutch_released(released))

    def on_recorder_state(self, state: dict) -> None:
        self.recorder_text = state.get("line", "")
        self.recording = state.get("state") == "recording"

    def on_recorder_event(self, ev: dict) -> None:
        if self._latched(_stamp(ev)):
            return
        line = notices.recorder_event(ev)
        if line:
            self._say(line)

    def on_safety_values(self, values: dict) -> None:
        """The safety filter's /diagnostics values: its interventions' onsets are told."""
        for line in self.interventions.update(values):
            self._say(line)

    # ------------------------------------------------------------ diagnostics

    def diagnostics(self, io: dict) -> tuple[dict, str, str]:
        """(values, level, message) of the session; ``io``: the sockets' counters, listed
        after the session's own."""
        values = {"active": self.active, "frames_while_inactive": self.frames_inactive,
                  "published": self.published, "deadline_timeouts": self.teleop.timeouts,
                  "log_lines": self.said, **io}
        values.update({f"{a}/engaged": r.engaged for a, r in self.teleop.arms.items()})
        values.update({f"{a}/enabled": e for a, e in self.teleop.enabled.items()})
        values.update({f"{a}/diverged": r.diverged for a, r in self.teleop.arms.items()})
        if self.latency_ms:
            values["latency_ms_p99"] = float(np.percentile(self.latency_ms, 99))
        return (values, "ok", "") if self.active else (values, "warn", "inactive: no target forwarded")
