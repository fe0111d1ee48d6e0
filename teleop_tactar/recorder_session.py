"""What recorder_node decides, without ROS: the bounded queue between the subscriptions and
the writer, the writer thread, the episode commands and the sim's episode events, and the
events and progress the node publishes. The node subscribes (raw CDR) and hands in bytes,
new topics, commands and episode events; this answers through :class:`Outputs`.

Messages may be dropped (a full queue counts a drop per topic: a slow disk must not stall the
executor); new topics and commands never are. The writer thread owns the
:class:`~teleop_tactar.recorder.EpisodeRecorder`, so the bag is written from one thread.

Episode events (``follow_episodes``): a start begins an episode unless it began more than
``LATE_START`` s ago (a late joiner must not record half an episode as a whole); an end stops
it, its outcome the sim's ``metrics.success`` (none: saved without an outcome). Each event
message itself goes into its episode's bag, the start first and the end last (the converter
aligns on them). A start that comes while an episode is still recording (its end never came)
saves that one without an outcome rather than run two episodes into one bag.

Each episode event goes out once (``started``, ``saved``, ``discarded``, ``error``; an error
once per distinct error): the teleop node tells the operator.
"""
from __future__ import annotations

import queue
import threading
from typing import Protocol

from .recorder import EpisodeRecorder
from .server import RECORD_COMMANDS

EPISODE_TOPIC = "/sim/episode"
#: a sim episode that started more than this long ago (s) is not recorded
LATE_START = 0.5
OUTCOMES = {"stop": None, "success": True, "failure": False}


class Outputs(Protocol):
    """Where the session's news goes (recorder_node: its topics and its log)."""

    def publish_event(self, event: dict) -> None: ...      # ``recorder/events``
    def publish_state(self, progress: dict) -> None: ...   # ``recorder/state`` (latched)


class RecorderSession:
    """``now_ns()``: the node's clock; ``log``: a logger (``info``, ``warning``, ``error``)."""

    def __init__(self, rec: EpisodeRecorder, task: str, queue_size: int, now_ns, out: Outputs, log):
        self.rec, self.task, self.now_ns, self.out, self.log = rec, task, now_ns, out, log
        self.q: queue.Queue = queue.Queue(maxsize=queue_size)
        self._reported = ""
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="recorder-writer", daemon=True)

    def start(self) -> "RecorderSession":
        self._writer.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Writes what is queued, closes a running episode (saved) and ends the writer."""
        self._stop.set()
        self._writer.join(timeout=timeout)

    # ------------------------------------------------------------ from the callbacks (store only)

    def message(self, name: str, data: bytes, stamp_ns: int) -> None:
        try:
            self.q.put_nowait(("msg", name, data, stamp_ns))
        except queue.Full:
            self.rec.drops[name] += 1

    def topic(self, name: str, type_name: str, offers: list) -> None:
        self.q.put(("topic", name, type_name, offers))   # control items are never dropped

    def command(self, cmd: dict) -> None:
        """A ``recorder/command`` (JSON ``{"cmd": ..., "task": ...}``); an unknown one is logged."""
        if cmd.get("cmd") not in RECORD_COMMANDS:
            self.log.warning(f"recorder/command: unknown command {cmd.get('cmd')!r}")
            return
        self.q.put(("cmd", cmd))

    def episode(self, ev: dict, event) -> None:
        """A ``sim/episode`` event; ``event()``: (its serialized message, receipt stamp (ns),
        the QoS its publisher offers), for the bag."""
        if ev.get("event") == "start":
            if self.now_ns() * 1e-9 > float(ev.get("start_stamp", 0.0)) + LATE_START:
                self.log.warning(f"episode {ev.get('episode')} was already running: not recorded")
                return
            self.q.put(("cmd", {"cmd": "start", "task": ev.get("task"), "sim_episode": ev.get("episode"),
                                "seed": ev.get("seed"), "_event": event()}))
        elif ev.get("event") == "end":
            success = (ev.get("metrics") or {}).get("success")
            self.q.put(("cmd", {"cmd": "stop" if success is None else ("success" if success else "failure"),
                                "_event": event()}))

    # ------------------------------------------------------------ writer thread

    def _write_loop(self) -> None:
        while not self._stop.is_set() or not self.q.empty():
            try:
                item = self.q.get(timeout=0.05)
            except queue.Empty:
                if self.rec.recording:
                    self.rec.flush()
                    self._report_error()
                continue
            kind = item[0]
            if kind == "msg":
                self.rec.write(item[1], item[2], item[3])
                if not self.rec.recording and self.rec.error:
                    self._report_error()
            elif kind == "topic":
                self.rec.add_topic(item[1], item[2], item[3])
            elif kind == "cmd":
                self._command(item[1])
        if self.rec.recording:
            self.rec.stop()

    def _report_error(self) -> None:
        if self.rec.error and self._reported != self.rec.error:
            self._reported = self.rec.error
            self.log.error(self.rec.error)
            self._tell("error", text=self.rec.error)
            self.progress()

    def _command(self, cmd: dict) -> None:
        c = cmd["cmd"]
        try:
            if c == "start":
                if "_event" in cmd and self.rec.recording:
                    folder = self.rec.stop(None)   # the last sim episode's end never came
                    self.log.warning(f"episode {folder.name}: its end event never came; saved without an outcome")
                    self._tell("saved", folder)
                extra = {k: v for k, v in cmd.items() if k not in ("cmd", "source", "_event")}
                if not extra.get("task"):
                    extra["task"] = self.task
                folder = self.rec.start(**extra)
                self._write_event(cmd)
                self.rec.write_latched(cmd["_event"][1] if "_event" in cmd else self.now_ns())
                self.log.info(f"recording {folder}")
                self._tell("started", folder)
            elif c in OUTCOMES:
                self._write_event(cmd)
                folder = self.rec.stop(OUTCOMES[c])
                if folder is not None:
                    self.log.info(f"episode {folder.name} saved ({c})")
                    if self.rec.error:
                        self._report_error()
                    else:
                        self._tell("saved", folder, None if c == "stop" else c)
            elif c == "discard":
                folder = self.rec.discard()
                if folder is not None:
                    self.log.info(f"episode {folder.name} discarded")
                    self._tell("discarded", folder)
        except OSError as exc:
            self.log.error(str(exc))
            self._tell("error", text=str(exc))
        self.progress()

    def _tell(self, kind: str, folder=None, outcome: str | None = None, text: str = "") -> None:
        self.out.publish_event({"event": kind, "episode": folder.name if folder else "", "outcome": outcome,
                                "text": text, "stamp": self.now_ns() * 1e-9})

    def _write_event(self, cmd: dict) -> None:
        if "_event" in cmd and self.rec.recording:
            data, stamp, offers = cmd["_event"]
            self.rec.add_topic(EPISODE_TOPIC, "std_msgs/msg/String", offers, keep_latched=False)
            self.rec.write(EPISODE_TOPIC, data, stamp)

    def progress(self) -> dict:
        """The progress (``recorder/state``): published, and its line logged while recording."""
        prog = self.rec.progress()
        prog["queued"] = self.q.qsize()
        if prog["state"] == "recording":
            self.log.info(prog["line"])
        self.out.publish_state(prog)
        return prog
