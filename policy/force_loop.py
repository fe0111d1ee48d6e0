"""A force loop beneath the learned policy: the fast loop's integral force regulation.

The fast decoder reacts to the force it reads proportionally at best (docs/results.md: the
tuned wipe decoder backs off +0.235 mm/N), while a surface that steps by 1-2.5 cm needs an
offset that grows for as long as the force is off its reference: an integral. In the
demonstrations that integral is the demonstrator's (it moves the commanded depth at
``(f - f_ref) / (tau * k)`` m/s, ``k`` the contact stiffness), and a policy that re-plans
from a fresh observation every 0.125 s carries it; a slow side 0.3 s late does not
(6/20 wiped, 19/20 without the delay).

:class:`ForceLoop` is parallel force/position control, the classic arrangement for contact
tasks under a position-controlled arm: the policy's target gives the motion, and along the
tool's contact normal an offset integrates the pressing-force error while the tool is in
contact or lost it less than ``search_s`` ago (a surface that dropped away is pressed after),
and relaxes back to zero once contact has been gone longer, so the force is held at the reference
whatever the surface does between two plans. On a robot whose Cartesian controller tracks a
target wrench (cartesian_compliance_controller's ``target_wrench``) the same reference could
go there instead; this loop works with any pose-target interface, the sim's included.

One per arm; ``step`` runs inside the fast loop's tick (no allocation beyond a few 3-vectors).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from slowfast_data.fields import check_ranges, described
from slowfast_data.filters import lowpass
from slowfast_data.geometry import quat_to_matrix_one


@dataclass
class ForceLoopConfig:
    """rdp_fast's ``force.*`` parameters. ``ref`` 0 turns the loop off (the default)."""

    ref: float = described(0.0, "pressing force held along the tool's contact normal while in contact, N "
                                "(0 = no force loop)", 0.0, 200.0)
    normal_tool: tuple = described((0.0, 0.0, -1.0), "the contact normal in the tool (TCP) frame, from the pad "
                                   "toward the surface: the pressing force is -wrench . normal (the wrench the "
                                   "surface exerts on the tool), the offset moves the target along R_tcp normal")
    tau: float = described(0.08, "loop time constant, s (gain = 1 / (tau * stiffness))", 0.005, 10.0)
    stiffness: float = described(1000.0, "contact stiffness the gain is scaled by, N/m (default: the sim wipe "
                                 "scene's pad coupling; measure your tool's)", 10.0, 1e6)
    contact: float = described(2.0, "the loop integrates only above this pressing force, N", 0.0, 200.0)
    filter_tau: float = described(0.01, "low-pass time constant on the measured force, s", 0.0, 1.0)
    max_rate: float = described(0.08, "largest offset speed, m/s", 0.0, 1.0)
    max_offset: float = described(0.04, "largest offset either way, m", 0.0, 0.2)
    search_s: float = described(0.3, "after contact is lost, keep integrating this long (the surface dropped away: "
                                     "press on to find it), s", 0.0, 5.0)
    release_tau: float = described(0.2, "then the offset decays to zero with this time constant, s", 0.001, 10.0)

    def __post_init__(self):
        check_ranges(self)
        n = np.asarray(self.normal_tool, dtype=float)
        if n.shape != (3,) or not np.isfinite(n).all() or np.linalg.norm(n) < 1e-6:
            raise ValueError(f"normal_tool: {self.normal_tool!r} is not a nonzero 3-vector")

    @property
    def enabled(self) -> bool:
        return self.ref > 0.0


class ForceLoop:
    """Integral force regulation along one tool's contact normal (see the module docstring)."""

    def __init__(self, cfg: ForceLoopConfig):
        self.cfg = cfg
        n = np.asarray(cfg.normal_tool, dtype=float)
        self.normal = n / np.linalg.norm(n)
        self.gain = 1.0 / (cfg.tau * cfg.stiffness)
        self.reset()

    def reset(self) -> None:
        self.offset = 0.0          # m along the pressing direction (positive: pressed deeper)
        self.force = 0.0           # filtered pressing force, N
        self._last: float | None = None
        self._contact_at = -math.inf   # when the force was last above ``contact``

    def step(self, now: float, wrench: np.ndarray, tcp_quat: np.ndarray) -> np.ndarray:
        """The world-frame offset to add to this arm's target position, after a reading of
        ``wrench`` (force in the tool frame first) at ``now`` with the tool at ``tcp_quat``
        (x, y, z, w). A non-finite reading leaves the offset as it is."""
        c = self.cfg
        dt = 0.0 if self._last is None else min(max(now - self._last, 0.0), 0.05)
        self._last = now
        f = -float(wrench[0] * self.normal[0] + wrench[1] * self.normal[1] + wrench[2] * self.normal[2])
        press = quat_to_matrix_one(tcp_quat) @ self.normal      # world direction that presses harder
        if not np.isfinite(press).all():
            return np.zeros(3)
        if not math.isfinite(f):
            return self.offset * press
        self.force = lowpass(self.force, f, dt, c.filter_tau)
        if self.force > c.contact:
            self._contact_at = now
        if now - self._contact_at <= c.search_s:
            rate = min(max(self.gain * (c.ref - self.force), -c.max_rate), c.max_rate)
            self.offset = min(max(self.offset + rate * dt, -c.max_offset), c.max_offset)
        else:
            self.offset *= math.exp(-dt / c.release_tau)
        return self.offset * press
