"""Small signal filters shared by the demonstrators (sim/expert.py) and the runtime
(policy/force_loop.py), so both smooth a force reading the same way."""
from __future__ import annotations


def lowpass(prev: float, x: float, dt: float, tau: float) -> float:
    """One step of a first-order low-pass with time constant ``tau`` (s) over ``dt`` (s);
    the first reading (``dt`` <= 0) passes through unfiltered."""
    return x if dt <= 0 else prev + (x - prev) * dt / (tau + dt)
