"""How a sim episode ends. No ROS, no MuJoCo: the sim node asks once per physics step.

- ``task``: at the task's scripted length (``SimEnv.done``), as evaluations and the scripted
  recorder need: every episode is the same length.
- ``operator``: when the operator asks (a headset or page button, through the teleop node),
  or after ``limit_s`` of sim time at the latest. The task's length does not end it: a person
  demonstrating is never cut off mid-motion by a clock they cannot see.

A request names the episode it is for (the one the operator saw start); a request for
another episode (a double press arriving after the reset it caused) is refused, so it never
ends the fresh episode at once.
"""
from __future__ import annotations

import threading

MODES = ("task", "operator")
REASONS = ("task_length", "operator", "time_limit")


class EpisodeEnd:
    def __init__(self, mode: str = "task", limit_s: float = 1800.0):
        if mode not in MODES:
            raise ValueError(f"episode_end: {mode!r} not one of {', '.join(MODES)}")
        if not 0.0 < float(limit_s) <= 86400.0:
            raise ValueError(f"episode limit: {limit_s} s outside (0, 86400]")
        self.mode, self.limit_s = mode, float(limit_s)
        self.episode: int | None = None
        self._requested: str | None = None
        self._lock = threading.Lock()

    def begin(self, episode: int) -> None:
        """A new episode starts: requests made before it are void."""
        with self._lock:
            self.episode, self._requested = int(episode), None

    def request(self, episode: int | None = None, reason: str = "operator") -> bool:
        """The operator asks to end ``episode`` (None: whichever is running). False when the
        request is refused: the task mode ignores requests, and a request for an episode that
        is not the running one is stale."""
        with self._lock:
            if self.mode != "operator" or self.episode is None:
                return False
            if episode is not None and int(episode) != self.episode:
                return False
            self._requested = reason
            return True

    def command(self, cmd) -> str:
        """Handle an operator's command (``{"cmd": "end", "episode": N, "source": ...}``, the
        JSON of ``sim/episode_command``): what to log. ValueError for a malformed command."""
        if not isinstance(cmd, dict) or cmd.get("cmd") != "end":
            raise ValueError(f"unknown command {cmd.get('cmd') if isinstance(cmd, dict) else cmd!r}")
        episode = cmd.get("episode")
        if episode is not None and (isinstance(episode, bool) or not isinstance(episode, int)):
            raise ValueError(f"episode {episode!r} is not an integer")
        if self.request(episode):
            return f"episode {self.episode}: end requested ({cmd.get('source', '?')})"
        return ""

    def check(self, sim_time: float, task_done: bool) -> str | None:
        """Why the running episode ends now (one of REASONS), or None while it goes on."""
        if self.mode == "task":
            return "task_length" if task_done else None
        with self._lock:
            if self._requested is not None:
                return self._requested
        return "time_limit" if sim_time >= self.limit_s else None
