"""Typed, validated configuration of one simulated task (see :class:`SimConfig`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

TASKS: Tuple[str, ...] = ("wipe", "lift")
#: What holds the tools: ``floating`` free bodies pulled by a native impedance coupling (fast),
#: or ``arm``: Franka Panda arms under a Cartesian impedance controller (sim/arm_control.py).
EMBODIMENTS: Tuple[str, ...] = ("floating", "arm")
#: The tasks each embodiment has a scene for.
EMBODIMENT_TASKS = {"floating": TASKS, "arm": TASKS}

#: Task defaults applied when a field is left at ``None``.
TASK_DEFAULTS = {
    "wipe": {"episode_seconds": 8.0, "force_band": (5.0, 15.0)},
    # lift: the band is on the squeeze force (mean normal force of the two paddles).
    "lift": {"episode_seconds": 6.0, "force_band": (4.0, 30.0)},
}


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


@dataclass
class SimConfig:
    """Configuration of a :class:`sim.SimEnv` episode source.

    Fields left at ``None`` take the task default (``TASK_DEFAULTS``): wipe runs 8 s with a
    5-15 N normal-force band, lift runs 6 s with a 4-30 N squeeze-force band.
    Every field is checked in ``__post_init__``; an error is a ``ValueError`` that names the
    field and the allowed range.
    """

    task: str = "wipe"
    seed: int = 0
    perturb: bool = True
    camera_width: int = 320
    camera_height: int = 240
    render: bool = True
    shadows: bool = False                               # rendered shadows (+8-20 ms/frame on a CPU renderer)
    force_band: Optional[Tuple[float, float]] = None   # N; task default when None
    episode_seconds: Optional[float] = None            # s; task default when None
    timestep: float = 0.001                             # s; physics step (1 kHz)
    log_hz: float = 200.0                               # force/metrics logging rate
    tactile_rows: int = 9                               # markers along the pad's y axis
    tactile_cols: int = 7                               # markers along the pad's x axis
    wrench_noise: float = 0.05                          # N (std); torque noise is 1/50 of it in N·m
    tactile_noise: float = 2e-6                         # m (std) on dx, dy
    squeeze_limit: float = 40.0                         # N; lift fails above this squeeze force
    stiffness: Optional[float] = None                   # N/m of the translational coupling; task default when None
    embodiment: str = "floating"                        # floating | arm (see EMBODIMENTS)

    def __post_init__(self) -> None:
        if not isinstance(self.task, str) or self.task not in TASKS:
            raise ValueError(f"SimConfig.task: unknown task {self.task!r} (choose from {', '.join(TASKS)})")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"SimConfig.seed: {self.seed!r} is not an integer in [0, 2**32)")
        if not isinstance(self.perturb, bool):
            raise ValueError(f"SimConfig.perturb: {self.perturb!r} is not a bool")
        for name in ("render", "shadows"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"SimConfig.{name}: {getattr(self, name)!r} is not a bool")
        for name, lo, hi in (("camera_width", 16, 4096), ("camera_height", 16, 4096),
                             ("tactile_rows", 2, 64), ("tactile_cols", 2, 64)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"SimConfig.{name}: {v!r} is not an integer in [{lo}, {hi}]")
        if not isinstance(self.embodiment, str) or self.embodiment not in EMBODIMENTS:
            raise ValueError(f"SimConfig.embodiment: unknown embodiment {self.embodiment!r} "
                             f"(choose from {', '.join(EMBODIMENTS)})")
        if self.task not in EMBODIMENT_TASKS[self.embodiment]:
            raise ValueError(f"SimConfig.embodiment: {self.embodiment!r} has no {self.task!r} scene yet "
                             f"(tasks: {', '.join(EMBODIMENT_TASKS[self.embodiment])})")
        defaults = TASK_DEFAULTS[self.task]
        if self.episode_seconds is None:
            self.episode_seconds = defaults["episode_seconds"]
        if not _finite(self.episode_seconds) or not 0.1 <= float(self.episode_seconds) <= 3600.0:
            raise ValueError(f"SimConfig.episode_seconds: {self.episode_seconds!r} is not in [0.1, 3600] s")
        self.episode_seconds = float(self.episode_seconds)
        if self.force_band is None:
            self.force_band = defaults["force_band"]
        try:
            lo, hi = (float(x) for x in self.force_band)
        except (TypeError, ValueError):
            raise ValueError(f"SimConfig.force_band: {self.force_band!r} is not a pair (low, high) in N") from None
        if not (_finite(lo) and _finite(hi) and 0.0 <= lo < hi <= 200.0):
            raise ValueError(f"SimConfig.force_band: {self.force_band!r} must satisfy 0 <= low < high <= 200 N")
        self.force_band = (lo, hi)
        if not _finite(self.timestep) or not 1e-4 <= float(self.timestep) <= 5e-3:
            raise ValueError(f"SimConfig.timestep: {self.timestep!r} is not in [1e-4, 5e-3] s")
        if not _finite(self.log_hz) or not 10.0 <= float(self.log_hz) <= 1.0 / float(self.timestep):
            raise ValueError(f"SimConfig.log_hz: {self.log_hz!r} is not in [10, 1/timestep] Hz")
        for name, hi in (("wrench_noise", 10.0), ("tactile_noise", 1e-3)):
            v = getattr(self, name)
            if not _finite(v) or not 0.0 <= float(v) <= hi:
                raise ValueError(f"SimConfig.{name}: {v!r} is not in [0, {hi}]")
        if not _finite(self.squeeze_limit) or not 1.0 <= float(self.squeeze_limit) <= 500.0:
            raise ValueError(f"SimConfig.squeeze_limit: {self.squeeze_limit!r} is not in [1, 500] N")
        if self.stiffness is not None and (not _finite(self.stiffness) or not 50.0 <= float(self.stiffness) <= 20000.0):
            raise ValueError(f"SimConfig.stiffness: {self.stiffness!r} is not in [50, 20000] N/m (or None)")
