"""Scripted, force-aware experts: the demonstration source.

An expert sees only what a real robot sees over its topics — TCP pose, wrist wrench, tactile
marker field and time — plus the task plan (:meth:`sim.SimEnv.task_spec`: home poses, path
or nominal object pose, force band, its own coupling stiffness). It never reads the true
surface height, box mass or friction, nor the perturbation schedule.

* :class:`WipeExpert` — approach, descend until touch, then an integral force loop on the
  commanded depth (``dz/dt = -k (F* - F)``, F* the band centre, rate-limited; the time
  constant and rate bound are the policy-side loop's defaults, :class:`policy.force_loop.ForceLoopConfig`,
  so the loop beneath a policy is the demonstrator's law) keeps the normal
  force in the band while the pad goes back and forth along the path; progress slows down
  when the force leaves the band, and a torque admittance turns the commanded tilt so the pad lies flat on a tilted
  surface. All commands are continuous (filtered rates), so demonstrations are smooth.
* :class:`LiftExpert` — close each paddle until touch, regulate each paddle's normal force by
  an integral loop on its inward offset, lift along a minimum-jerk profile and hold. The
  commanded squeeze follows the tangential load (``F* = F_t / r_safe``, at least ``f_min``),
  and a tactile slip reflex raises it 1.8-fold when the tactile field shows the box sliding:
  the marker field changes (mean marker motion over 30 ms above 10 % of the field's size)
  while the wrist load stays steady after the lift, or the load the gel carries (the mean marker shift)
  drops by 8 % within 0.1 s while the grip force holds.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from policy.force_loop import ForceLoopConfig
from slowfast_data.filters import lowpass
from slowfast_data.geometry import axis_angle_quat, quat_wxyz_to_matrix, wxyz_to_xyzw, xyzw_to_wxyz

Command = Dict[str, Tuple[np.ndarray, np.ndarray]]


def min_jerk(s: float) -> float:
    s = min(max(s, 0.0), 1.0)
    return s ** 3 * (10.0 - 15.0 * s + 6.0 * s * s)


def _pad_normal_tool(quat_xyzw) -> np.ndarray:
    return quat_wxyz_to_matrix(xyzw_to_wxyz(quat_xyzw))[:, 2]


def _pad_axes_tool(quat_xyzw) -> np.ndarray:
    return quat_wxyz_to_matrix(xyzw_to_wxyz(quat_xyzw))


class WipeExpert:
    """Force-feedback wiping along the planned path (see module docstring)."""

    def __init__(self, spec: Dict, approach_s: float = 0.8, descend_speed: float = 0.05,
                 loop_tau: float = ForceLoopConfig.tau, max_dz_rate: float = ForceLoopConfig.max_rate,
                 speed: Optional[float] = None,
                 tilt_gain: float = 1.5, max_tilt_deg: float = 10.0, torque_tau: float = 0.03):
        self.spec = spec
        self.band = tuple(spec["force_band"])
        self.f_target = 0.5 * (self.band[0] + self.band[1])
        self.k_i = 1.0 / (loop_tau * float(spec["stiffness"]))
        self.max_dz_rate = max_dz_rate
        self.approach_s = approach_s
        self.descend_speed = descend_speed
        self.home = np.asarray(spec["home"]["arm"][0], float)
        self.path = np.asarray(spec["path_xy"], float)
        seg = np.linalg.norm(np.diff(self.path, axis=0), axis=1)
        self.cum = np.concatenate([[0.0], np.cumsum(seg)])
        self.surface_z = float(spec["surface_z"])
        self.speed = float(speed if speed is not None else spec["speed"])
        self.n_pad = _pad_normal_tool(spec["pad_quat_tool_xyzw"]["arm"])
        lo, hi = spec["workspace"]["arm"]
        self.z_lo = float(lo[2]) + 0.005
        self.tilt_gain = tilt_gain
        self.torque_tau = torque_tau
        self.max_tilt = np.deg2rad(max_tilt_deg)
        self.reset()

    def reset(self) -> None:
        self.phase = "approach"
        self.last_t: Optional[float] = None
        self.f = 0.0
        self.tau = np.zeros(2)
        self.z_cmd: Optional[float] = None
        self.s = 0.0
        self.v = 0.0
        self.direction = 1.0
        self.tilt = np.zeros(2)
        self.xy = self.home[:2].copy()

    def _path_point(self, s: float) -> np.ndarray:
        s = min(max(s, 0.0), self.cum[-1])
        return np.array([np.interp(s, self.cum, self.path[:, k]) for k in range(2)])

    def act(self, t: float, states) -> Command:
        st = states["arm"]
        dt = 0.0 if self.last_t is None else max(0.0, t - self.last_t)
        self.last_t = t
        f_meas = -float(np.dot(st.wrench[:3], self.n_pad))           # pressing force along the pad normal
        self.f = lowpass(self.f, f_meas, dt, 0.01)
        if self.z_cmd is None:
            self.z_cmd = float(self.home[2])
        start = self.path[0]
        if self.phase == "approach":
            s = min_jerk(t / self.approach_s)
            self.xy = self.home[:2] + s * (start - self.home[:2])
            self.z_cmd = float(self.home[2] + s * (self.surface_z + 0.01 - self.home[2]))
            if t >= self.approach_s:
                self.phase = "descend"
        elif self.phase == "descend":
            self.z_cmd -= self.descend_speed * dt
            if self.f > 2.0:
                self.phase = "wipe"
        else:
            dz = -self.k_i * (self.f_target - self.f)
            dz = float(np.clip(dz, -self.max_dz_rate, self.max_dz_rate))
            self.z_cmd += dz * dt
            lo, hi = self.band
            margin = 2.0
            ok = np.clip(min(self.f - (lo - margin), (hi + margin) - self.f) / margin, 0.0, 1.0)
            # back and forth along the path until the episode ends; the speed is filtered, so
            # the pad slows down, turns and speeds up again at each end
            if self.s >= self.cum[-1]:
                self.direction = -1.0
            elif self.s <= 0.0:
                self.direction = 1.0
            self.v = lowpass(self.v, self.direction * self.speed * ok, dt, 0.15)
            self.s = float(np.clip(self.s + self.v * dt, 0.0, self.cum[-1]))
            self.xy = self._path_point(self.s)
            # torque admittance: tilt the commanded orientation to cancel the contact torque
            tau = np.asarray(st.wrench[3:5], float)
            self.tau = lowpass(self.tau, tau, dt, self.torque_tau)
            if self.f > 1.0:
                self.tilt = self.tilt + self.tilt_gain * self.tau * dt
                n = np.linalg.norm(self.tilt)
                if n > self.max_tilt:
                    self.tilt *= self.max_tilt / n
        self.z_cmd = max(self.z_cmd, self.z_lo)
        ang = float(np.linalg.norm(self.tilt))
        q = wxyz_to_xyzw(axis_angle_quat([self.tilt[0], self.tilt[1], 0.0], ang))
        return {"arm": (np.array([self.xy[0], self.xy[1], self.z_cmd]), q)}


class LiftExpert:
    """Bimanual squeeze-and-lift with load-proportional grip and a tactile slip reflex."""

    def __init__(self, spec: Dict, close_speed: float = 0.05, loop_tau: float = 0.03,
                 max_rate: float = 0.25, r_safe: float = 0.4, f_min: float = 6.0,
                 lift_seconds: float = 1.5, slip_change: float = 0.1, slip_floor: float = 5e-6,
                 slip_window: float = 0.03, slip_boost: float = 1.8, refractory: float = 0.3,
                 force_rate: float = 300.0, shear_drop: float = 0.08, shear_window: float = 0.1):
        self.spec = spec
        self.arms = tuple(spec["arms"])
        self.k_i = 1.0 / (loop_tau * float(spec["stiffness"]))
        self.max_rate = max_rate
        self.close_speed = close_speed
        self.r_safe = r_safe
        self.f_min = f_min
        self.f_max = min(0.8 * float(spec["squeeze_limit"]), 0.95 * float(spec["force_band"][1]))
        self.lift_height = float(spec["lift_height"])
        self.lift_seconds = lift_seconds
        self.slip_change = slip_change
        self.shear_drop = shear_drop
        self.shear_window = shear_window
        self.slip_floor = slip_floor
        self.slip_window = slip_window
        self.slip_boost = slip_boost
        self.refractory = refractory
        self.force_rate = force_rate
        self.home = {a: np.asarray(spec["home"][a][0], float) for a in self.arms}
        self.quat = {a: np.asarray(spec["home"][a][1], float) for a in self.arms}
        self.axes = {a: _pad_axes_tool(spec["pad_quat_tool_xyzw"][a]) for a in self.arms}
        box = np.asarray(spec["box_pos"], float)
        # inward direction of each paddle in the world (pad normal at the home orientation)
        self.inward = {a: quat_wxyz_to_matrix(xyzw_to_wxyz(self.quat[a])) @ self.axes[a][:, 2] for a in self.arms}
        self.box = box
        self.reset()

    def reset(self) -> None:
        self.last_t: Optional[float] = None
        self.phase = "close"
        self.offset = {a: 0.0 for a in self.arms}        # inward travel from home, m
        self.touch = {a: False for a in self.arms}
        self.f = {a: 0.0 for a in self.arms}
        self.ft = {a: 0.0 for a in self.arms}
        self.f_cmd = self.f_min
        self.boost = 1.0
        self.t_ready: Optional[float] = None
        self.t_lift: Optional[float] = None
        self.hist: Dict[str, list] = {a: [] for a in self.arms}
        self.shear: Dict[str, list] = {a: [] for a in self.arms}
        self.base: Dict[str, Optional[np.ndarray]] = {a: None for a in self.arms}
        self.last_slip = -1.0
        self.slips = 0
        self.slip_log: list = []    # (time, cue) of each reflex

    def act(self, t: float, states) -> Command:
        dt = 0.0 if self.last_t is None else max(0.0, t - self.last_t)
        self.last_t = t
        for a in self.arms:
            w = np.asarray(states[a].wrench[:3], float)
            n = self.axes[a][:, 2]
            fn = -float(np.dot(w, n))
            ft = float(np.linalg.norm(w + fn * n))
            self.f[a] = lowpass(self.f[a], fn, dt, 0.01)
            self.ft[a] = lowpass(self.ft[a], ft, dt, 0.02)
            if self.f[a] > 1.5:
                self.touch[a] = True
        # grip force: load-proportional, boosted by the slip reflex, rate-limited
        want = max(self.f_min, max(self.ft.values()) / self.r_safe) * self.boost
        want = min(want, self.f_max)
        step = self.force_rate * dt
        self.f_cmd = float(np.clip(want, self.f_cmd - step, self.f_cmd + step))
        # tactile slip reflex: while the box is carried, the marker field changing although the
        # wrist load is steady means the box is sliding over the gel -> squeeze harder
        if self.t_lift is not None:
            slip = False
            for a in self.arms:
                field = np.asarray(states[a].tactile[:, 2:4], float)
                hist = self.hist[a]
                hist.append((t, field, self.ft[a], self.f[a]))
                while hist and hist[0][0] < t - self.slip_window - 1e-9:
                    hist.pop(0)
                t0, field0, ft0, fn0 = hist[0]
                if t - t0 < 0.5 * self.slip_window:
                    continue
                change = float(np.mean(np.linalg.norm(field - field0, axis=1)))
                size = float(np.mean(np.linalg.norm(field, axis=1)))
                steady = (abs(self.ft[a] - ft0) < 0.05 * ft0 + 0.05
                          and abs(self.f[a] - fn0) < 0.05 * fn0 + 0.1)
                carried = t >= self.t_lift + self.lift_seconds      # lift done: the load is constant
                if carried and steady and change > self.slip_change * size + self.slip_floor:
                    slip = "field"
                # the load the gel carries (mean marker shift) dropping while the grip holds
                if self.base[a] is None:
                    self.base[a] = field.mean(axis=0)        # unloaded gel at lift-off
                shear = float(np.linalg.norm(field.mean(axis=0) - self.base[a]))
                sh = self.shear[a]
                sh.append((t, shear))
                while sh and sh[0][0] < t - self.shear_window - 1e-9:
                    sh.pop(0)
                peak = max(v for _, v in sh)
                if (peak > 4.0 * self.slip_floor and shear < (1.0 - self.shear_drop) * peak
                        and abs(self.f[a] - fn0) < 0.1 * max(fn0, 1.0)
                        and abs(self.f[a] - self.f_cmd) < 0.1 * self.f_cmd):
                    slip = "shear"
            if slip and t - self.last_slip > self.refractory:
                self.boost = min(self.boost * self.slip_boost, 3.0)
                self.last_slip = t
                self.slips += 1
                self.slip_log.append((round(t, 3), slip))
                for a in self.arms:
                    self.shear[a].clear()
        for a in self.arms:
            if not self.touch[a]:
                self.offset[a] += self.close_speed * dt
            else:
                rate = float(np.clip(self.k_i * (self.f_cmd - self.f[a]), -self.max_rate, self.max_rate))
                self.offset[a] += rate * dt
            self.offset[a] = min(self.offset[a], 0.08)
        if self.t_lift is None and all(self.touch.values()):
            ok = all(abs(self.f[a] - self.f_cmd) < 0.25 * self.f_cmd for a in self.arms)
            if ok:
                self.t_ready = t if self.t_ready is None else self.t_ready
                if t - self.t_ready >= 0.2:
                    self.t_lift = t
            else:
                self.t_ready = None
        dz = 0.0 if self.t_lift is None else self.lift_height * min_jerk((t - self.t_lift) / self.lift_seconds)
        out: Command = {}
        for a in self.arms:
            p = self.home[a] + self.inward[a] * self.offset[a] + np.array([0.0, 0.0, dz])
            out[a] = (p, self.quat[a].copy())
        return out


def make_expert(task: str, env_info, **kw):
    """Expert for ``task``; ``env_info`` is ``SimEnv.task_spec()`` (or a SimEnv, whose spec is used);
    ``kw`` go to the expert's constructor (e.g. ``loop_tau``)."""
    if hasattr(env_info, "task_spec"):
        env_info = env_info.task_spec()
    if task == "wipe":
        return WipeExpert(env_info, **kw)
    if task == "lift":
        return LiftExpert(env_info, **kw)
    from .config import TASKS

    raise ValueError(f"make_expert: unknown task {task!r} (choose from {', '.join(TASKS)})")
