"""The synchronous, ROS-free simulator: :class:`SimEnv`.

Physics runs at 1 kHz. Each arm's tool is a free body pulled to its commanded pose by a
Cartesian spring-damper that MuJoCo evaluates natively every step (six ``position`` actuators
with a site transmission, see :mod:`sim.scene`): stiffness 1000 N/m, so the contact force
depends on how far the commanded pose goes into the surface. Per-step Python work is nil;
every ``1/log_hz`` s (5 ms) a tick applies scheduled perturbations and logs ground truth for
the metrics. Sensors are computed on demand in :meth:`SimEnv.observe`.

With ``SimConfig.embodiment="arm"`` the tools sit at the flanges of Panda arms instead, each
driven every physics step by a Cartesian impedance controller (:mod:`sim.arm_control`) towards
the same target; the wrist wrench comes from an F/T sensor at the flange. See sim/README.md.

Tasks and success (see also :mod:`sim.metrics` for the force metrics):

* ``wipe`` — wipe a polyline path on a table while keeping the pad's normal force in
  ``force_band`` (default 5-15 N). The force trace is the ground-truth normal force between
  pad and table. A path sample (every 5 mm) counts as wiped when the TCP passes within
  ``WIPE_RADIUS`` of it while the force is in the band. **Success: coverage >= 0.9 and
  time in band >= 0.8 of the time after the first contact (force >= 1 N).**
  ``slip_events`` for wipe counts contact losses (force < 0.5 N for >= 20 ms after the
  first contact). With ``perturb=True`` the table changes height (1-2.5 cm, up or down) and
  tilt (2-5 deg about a random horizontal axis) twice per episode, ramped over 0.1-0.4 s.
* ``lift`` — squeeze a box (mass 0.2-0.45 kg, friction 0.5-0.9, seeded) between two paddles
  and lift it. The force trace is the squeeze force (mean ground-truth normal force of the
  two paddles on the box). A slip event is the box sliding down by more than 3 mm relative
  to the paddles while grasped. **Success: once the box first reaches 10 cm above its start
  it stays there, without a slip event, to the end of the episode, which is at least 2 s
  later (``hold_time``), and the squeeze force never exceeds ``squeeze_limit``.** With ``perturb=True`` one event happens during the hold: the box's
  mass grows by 60-100 % (added load, ramped over 0.1-0.3 s) or its friction drops to 35-50 %
  (ramped over 0.3-0.6 s).
"""
from __future__ import annotations

import functools
import math
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from .config import SimConfig
from .metrics import count_drops, force_metrics
from .scene import build_scene
from .tactile import TactileModel
from slowfast_data.camera import CameraIntrinsics
from slowfast_data.geometry import axis_angle_quat, quat_wxyz_to_matrix, wxyz_to_xyzw
from .types import ArmState

WIPE_PATH = np.array([[-0.15, -0.04], [0.15, -0.04], [0.15, 0.04], [-0.15, 0.04]])  # world xy, m
WIPE_RADIUS = 0.02      # m: a path sample within this distance of the TCP is under the pad
WIPE_SPEED = 0.12       # m/s: nominal wiping speed in the task plan
LIFT_HEIGHT = 0.15      # m: how high the plan lifts the box
LIFT_SUCCESS_HEIGHT = 0.10
LIFT_HOLD_SECONDS = 2.0
SLIP_THRESHOLD = 0.003  # m
MAX_DEPTH = 10.0        # m: farther depth pixels read 0 (no return)
_WXYZ_TO_XYZW = np.array([1, 2, 3, 0])
_XYZW_TO_WXYZ = np.array([3, 0, 1, 2])
_XYZ = np.arange(3)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.cross`` of two 3-vectors, the same arithmetic (bit for bit) without its ~40 µs of
    axis handling per call (numpy 2)."""
    a0, a1, a2 = a.tolist()
    b0, b1, b2 = b.tolist()
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


class SimEnv:
    """A MuJoCo task episode source with the synchronous API used by the ROS node and the CLI."""

    def __init__(self, cfg: SimConfig):
        import mujoco

        if not isinstance(cfg, SimConfig):
            raise ValueError(f"SimEnv: cfg must be a SimConfig, got {type(cfg).__name__}")
        self._mj = mujoco
        self.cfg = cfg
        self.task = cfg.task
        self._scene = build_scene(cfg)
        self.model = mujoco.MjModel.from_xml_string(self._scene.xml)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.arms: Tuple[str, ...] = tuple(self._scene.arms)
        self.cameras: Tuple[str, ...] = ("camera",)
        self.dt = float(m.opt.timestep)
        self.force_band = tuple(cfg.force_band)
        self.episode_seconds = float(cfg.episode_seconds)
        self._log_every = max(1, int(round(1.0 / (cfg.log_hz * self.dt))))
        obj = mujoco.mjtObj
        self._ids: Dict[str, Dict[str, int]] = {}
        self.embodiment = cfg.embodiment
        for i, arm in enumerate(self.arms):
            body = mujoco.mj_name2id(m, obj.mjOBJ_BODY, f"{arm}_tool")
            target_body = mujoco.mj_name2id(m, obj.mjOBJ_BODY, f"{arm}_target")
            self._ids[arm] = {
                "body": body,
                "target_body": target_body,
                "mocap": int(m.body_mocapid[target_body]),
                "tcp": mujoco.mj_name2id(m, obj.mjOBJ_SITE, f"{arm}_tcp"),
                "pad_site": mujoco.mj_name2id(m, obj.mjOBJ_SITE, f"{arm}_pad"),
                "pad_geom": mujoco.mj_name2id(m, obj.mjOBJ_GEOM, f"{arm}_pad"),
            }
            if self.embodiment == "floating":
                jnt = mujoco.mj_name2id(m, obj.mjOBJ_JOINT, f"{arm}_free")
                self._ids[arm].update({"act": mujoco.mj_name2id(m, obj.mjOBJ_ACTUATOR, f"{arm}_imp0"),
                                       "qadr": int(m.jnt_qposadr[jnt]), "dadr": int(m.jnt_dofadr[jnt])})
            else:
                sens = {k: mujoco.mj_name2id(m, obj.mjOBJ_SENSOR, f"{arm}_ft_{k}") for k in ("force", "torque")}
                self._ids[arm].update({"ft_site": mujoco.mj_name2id(m, obj.mjOBJ_SITE, f"{arm}_ft"),
                                       "ft_force": int(m.sensor_adr[sens["force"]]),
                                       "ft_torque": int(m.sensor_adr[sens["torque"]])})
        self._arm_ctl: Dict[str, object] = {}
        if self.embodiment == "arm":
            self._setup_arms()
        self._tactile = {arm: TactileModel(cfg.tactile_rows, cfg.tactile_cols, self._scene.geometry[arm].pad_half)
                         for arm in self.arms}
        self._cam_id = {c: mujoco.mj_name2id(m, obj.mjOBJ_CAMERA, c) for c in self.cameras}
        self._renderer = None
        nz = cfg.wrench_noise
        self._wrench_noise = np.array([nz] * 3 + [nz / 50.0] * 3) if nz > 0 else None
        if self.task == "wipe":
            self._table_mocap = int(m.body_mocapid[mujoco.mj_name2id(m, obj.mjOBJ_BODY, "table")])
            self._surface_geom = mujoco.mj_name2id(m, obj.mjOBJ_GEOM, "table")
            s = np.linalg.norm(np.diff(WIPE_PATH, axis=0), axis=1)
            cum = np.concatenate([[0.0], np.cumsum(s)])
            samples = np.arange(0.0, cum[-1] + 1e-9, 0.005)
            self._path_samples = np.column_stack([np.interp(samples, cum, WIPE_PATH[:, k]) for k in range(2)])
        else:
            self._box_body = mujoco.mj_name2id(m, obj.mjOBJ_BODY, "box")
            self._box_geom = mujoco.mj_name2id(m, obj.mjOBJ_GEOM, "box")
            self._box_qadr = int(m.jnt_qposadr[mujoco.mj_name2id(m, obj.mjOBJ_JOINT, "box_free")])
            self._box_mass0 = float(m.body_mass[self._box_body])
            self._box_inertia0 = m.body_inertia[self._box_body].copy()
            self._box_friction0 = m.geom_friction[self._box_geom].copy()
        self._episode = 0
        self.seed = int(cfg.seed)
        self.reset()

    # ------------------------------------------------------------------ episode
    def reset(self, seed: Optional[int] = None) -> None:
        """Start a new episode. ``seed=None``: the config seed on the first reset, then +1 per reset."""
        mj = self._mj
        m, d = self.model, self.data
        if seed is None:
            seed = int(self.cfg.seed) + self._episode
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
            raise ValueError(f"SimEnv.reset: seed {seed!r} is not an integer in [0, 2**32)")
        self._episode += 1
        self.seed = int(seed)
        r_task, r_pert, r_noise = (np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(3))
        self._noise_rng = r_noise
        mj.mj_resetData(m, d)
        for arm in self.arms:
            g = self._scene.geometry[arm]
            ids = self._ids[arm]
            if self.embodiment == "floating":
                d.qpos[ids["qadr"]:ids["qadr"] + 3] = g.home_pos
                d.qpos[ids["qadr"] + 3:ids["qadr"] + 7] = g.home_quat_wxyz
            else:
                ctl = self._arm_ctl[arm]
                d.qpos[ctl.qadr] = ctl.q_rest
            d.mocap_pos[ids["mocap"]] = g.home_pos
            d.mocap_quat[ids["mocap"]] = g.home_quat_wxyz
        self._events: List[Dict] = []
        if self.task == "wipe":
            d.mocap_pos[self._table_mocap] = 0.0
            d.mocap_quat[self._table_mocap] = [1.0, 0.0, 0.0, 0.0]
            self._table_state = (0.0, np.zeros(2))           # height, tilt rotation vector (x, y)
            if self.cfg.perturb:
                T = self.episode_seconds
                t1 = r_pert.uniform(0.25 * T, 0.45 * T)
                t2 = r_pert.uniform(max(t1 + 1.5, 0.55 * T), max(t1 + 1.6, T - 1.5))
                z = 0.0
                for tp in (t1, t2):
                    if tp > T - 0.5:
                        continue
                    dz = r_pert.uniform(0.01, 0.025) * r_pert.choice([-1.0, 1.0])
                    if abs(z + dz) > 0.03:
                        dz = -dz
                    z = float(z + dz)
                    ang = np.deg2rad(r_pert.uniform(2.0, 5.0))
                    phi = r_pert.uniform(0.0, 2 * np.pi)
                    self._events.append({"t": float(tp), "kind": "surface", "dur": float(r_pert.uniform(0.1, 0.4)),
                                         "z": z, "tilt": ang * np.array([np.cos(phi), np.sin(phi)])})
        else:
            mass = r_task.uniform(0.2, 0.45)
            mu = r_task.uniform(0.5, 0.9)
            self._mass, self._mu = float(mass), float(mu)
            m.body_mass[self._box_body] = mass
            m.body_inertia[self._box_body] = self._box_inertia0 * mass / self._box_mass0
            m.geom_friction[self._box_geom] = self._box_friction0
            m.geom_friction[self._box_geom, 0] = mu
            bz = self._scene.extras["box_half"][2]
            d.qpos[self._box_qadr:self._box_qadr + 7] = [0, 0, bz, 1, 0, 0, 0]
            lo_t, hi_t = 0.57 * self.episode_seconds, self.episode_seconds - 1.2
            if self.cfg.perturb and hi_t > lo_t:          # episodes under ~2.8 s get none
                tp = r_pert.uniform(lo_t, hi_t)
                if r_pert.random() < 0.5:
                    self._events.append({"t": float(tp), "kind": "load", "scale": float(r_pert.uniform(1.6, 2.0)),
                                         "dur": float(r_pert.uniform(0.1, 0.3))})
                else:
                    self._events.append({"t": float(tp), "kind": "friction", "scale": float(r_pert.uniform(0.35, 0.5)),
                                         "dur": float(r_pert.uniform(0.3, 0.6))})
        for e in self._events:
            e["applied"] = False
            e.pop("base", None)
        mj.mj_forward(m, d)
        if self._arm_ctl:       # the arms start held by their controllers (and the F/T reads 0)
            self._control_arms(m, d)
            for ctl in self._arm_ctl.values():
                ctl.reset_status()
            mj.mj_forward(m, d)
        self._steps = 0
        self._log_t: List[float] = []
        self._log_f: List[float] = []
        self._log_aux: List[Tuple] = []
        if self.task == "lift":
            self._box_z0 = float(d.xpos[self._box_body][2])
        self._tick()

    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def done(self) -> bool:
        return self.data.time >= self.episode_seconds - 0.5 * self.dt

    @property
    def perturbation_times(self) -> List[float]:
        return [e["t"] for e in self._events]

    def keep_perturbations(self, n: int) -> None:
        """Keep only the first ``n`` scheduled perturbations of the episode just reset (call
        right after :meth:`reset`): the same scene and seed without the later ones, for the
        nominal actions of a demonstration (:func:`sim.datagen.nominal_actions`)."""
        if not 0 <= int(n) <= len(self._events):
            raise ValueError(f"keep_perturbations: {n!r} is not in [0, {len(self._events)}]")
        if self._steps:
            raise ValueError("keep_perturbations: call it right after reset, before the first step")
        del self._events[int(n):]

    def perturbation_events(self) -> List[Dict]:
        """The scheduled perturbations (time, kind and size), for reports."""
        out = []
        for e in self._events:
            x = {k: (v.tolist() if isinstance(v, np.ndarray) else float(v) if isinstance(v, np.floating) else v)
                 for k, v in e.items() if k not in ("applied", "base")}
            out.append(x)
        return out

    # ------------------------------------------------------------------ stepping
    def step(self, n: int = 1) -> None:
        """Advance ``n`` physics steps (the impedance coupling is evaluated by MuJoCo every step)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"SimEnv.step: n={n!r} is not a non-negative integer")
        n = int(n)
        mj_step = self._mj.mj_step if self.embodiment == "floating" else self._arm_steps
        while n > 0:
            k = min(n, self._log_every - self._steps % self._log_every)
            mj_step(self.model, self.data, nstep=k)
            self._steps += k
            n -= k
            if self._steps % self._log_every == 0:
                self._tick()

    # ------------------------------------------------------------------ arms
    def _setup_arms(self) -> None:
        """The arm embodiment: one Cartesian impedance controller per arm (sim/arm_control.py),
        its rest posture the IK solution of the home pose (also the start of every episode)."""
        from .arm import actuator_names, joint_names, solve_ik_multi
        from .arm_control import ArmControlConfig, CartesianImpedanceController, ImpedanceGroup

        mj, m = self._mj, self.model
        scratch = mj.MjData(m)
        gains = self._scene.extras["gains"]
        for arm in self.arms:
            g = self._scene.geometry[arm]
            jids = [mj.mj_name2id(m, mj.mjtObj.mjOBJ_JOINT, j) for j in joint_names(arm)]
            qadr = np.array([m.jnt_qposadr[j] for j in jids])
            dof = np.array([m.jnt_dofadr[j] for j in jids])
            lo, hi = m.jnt_range[jids].T
            q, err = solve_ik_multi(m, scratch, self._ids[arm]["tcp"], qadr, dof, g.home_pos,
                                    quat_wxyz_to_matrix(g.home_quat_wxyz), lo, hi)
            if err > 1e-3:
                raise RuntimeError(f"SimEnv: {arm}'s home pose is out of the arm's reach (IK residual {err:.3g})")
            self._arm_ctl[arm] = CartesianImpedanceController(
                m, f"{arm}_tcp", joint_names(arm), actuator_names(arm), kp=gains["kp"], kr=gains["kr"],
                q_rest=q, cfg=ArmControlConfig())
        # every arm computed together each physics step, towards its mocap target
        self._arm_group = ImpedanceGroup(m, list(self._arm_ctl.values()))
        self._arm_targets = self._arm_group.targets(self.data, [self._ids[a]["mocap"] for a in self._arm_ctl])

    def _arm_steps(self, m, d, nstep: int) -> None:
        """``nstep`` physics steps with every arm's controller evaluated at each (1 kHz)."""
        mj = self._mj
        for _ in range(nstep):
            mj.mj_step1(m, d)
            self._control_arms(m, d)
            mj.mj_step2(m, d)

    def _control_arms(self, m, d) -> None:
        """Each arm's joint torques towards its target (the mocap pose), into ``d.ctrl``."""
        self._arm_group.compute(d, self._arm_targets, write_ctrl=True)

    def arm_base(self, arm: str) -> Tuple[np.ndarray, np.ndarray]:
        """Where the arm's base stands (embodiment arm): world position (m) and orientation
        (x, y, z, w) of its base link, the frame a robot's Cartesian controller works in."""
        self._check_arm(arm)
        if arm not in self._arm_ctl:
            raise ValueError(f"arm_base({arm}): the {self.embodiment} embodiment has no arm base")
        from .arm import base_quat_wxyz

        pos, yaw = self._scene.extras["arm_bases"][arm]
        return np.asarray(pos, float), wxyz_to_xyzw(base_quat_wxyz(yaw))

    def joint_state(self, arm: str) -> Dict[str, object]:
        """The arm's joints now: ``name`` (list), ``position`` (rad), ``velocity`` (rad/s),
        ``effort`` (N·m, the commanded torques). Empty lists for the floating embodiment."""
        self._check_arm(arm)
        ctl = self._arm_ctl.get(arm)
        if ctl is None:
            return {"name": [], "position": np.zeros(0), "velocity": np.zeros(0), "effort": np.zeros(0)}
        from .arm import joint_names

        return {"name": list(joint_names(arm)), "position": self.data.qpos[ctl.qadr].copy(),
                "velocity": self.data.qvel[ctl.dof].copy(), "effort": self.data.ctrl[ctl.act].copy()}

    def controller_status(self, arm: str) -> Dict:
        """The arm controller's counters this episode (:class:`sim.arm_control.ControlStatus`);
        empty for the floating embodiment."""
        self._check_arm(arm)
        ctl = self._arm_ctl.get(arm)
        return ctl.status.as_dict() if ctl is not None else {}

    def _tick(self) -> None:
        """Every log period: scheduled perturbations, then ground-truth logging."""
        t = self.data.time
        if self.task == "wipe":
            self._update_table(t)
            f = self._normal_force(self._ids["arm"]["pad_geom"], self._surface_geom)
            tcp = self.data.site_xpos[self._ids["arm"]["tcp"]]
            self._log_aux.append((float(tcp[0]), float(tcp[1])))
        else:
            for e in self._events:
                if e["applied"] or t < e["t"]:
                    continue
                b = self._box_body
                if "base" not in e:
                    e["base"] = (float(self.model.body_mass[b]), self.model.body_inertia[b].copy(),
                                 float(self.model.geom_friction[self._box_geom, 0]))
                s = min(1.0, (t - e["t"]) / e["dur"])
                k = 1.0 + (e["scale"] - 1.0) * s * s * (3.0 - 2.0 * s)
                mass, inertia, mu = e["base"]
                if e["kind"] == "load":
                    self.model.body_mass[b] = mass * k
                    self.model.body_inertia[b] = inertia * k
                else:
                    self.model.geom_friction[self._box_geom, 0] = mu * k
                e["applied"] = s >= 1.0
            fl = self._normal_force(self._ids["left"]["pad_geom"], self._box_geom)
            fr = self._normal_force(self._ids["right"]["pad_geom"], self._box_geom)
            f = 0.5 * (fl + fr)
            pz = 0.5 * (self.data.site_xpos[self._ids["left"]["tcp"]][2] + self.data.site_xpos[self._ids["right"]["tcp"]][2])
            self._log_aux.append((float(self.data.xpos[self._box_body][2]), float(pz), fl, fr))
        self._log_t.append(float(t))
        self._log_f.append(float(f))

    def _update_table(self, t: float) -> None:
        z, tilt = 0.0, np.zeros(2)
        for e in self._events:
            if t < e["t"]:
                break
            s = min(1.0, (t - e["t"]) / e["dur"])
            s = s * s * (3.0 - 2.0 * s)
            z = z + s * (e["z"] - z)
            tilt = tilt + s * (e["tilt"] - tilt)
        if z == self._table_state[0] and np.array_equal(tilt, self._table_state[1]):
            return
        self._table_state = (z, tilt)
        ang = float(np.linalg.norm(tilt))
        self.data.mocap_pos[self._table_mocap] = [0.0, 0.0, z]
        self.data.mocap_quat[self._table_mocap] = axis_angle_quat([tilt[0], tilt[1], 0.0], ang)

    # ------------------------------------------------------------------ contacts
    def _pad_contacts(self, geom: int, other: Optional[int] = None):
        """Contacts of ``geom``: world positions (k, 3) and forces on ``geom`` in world (k, 3)."""
        d = self.data
        ncon = d.ncon
        if ncon == 0:
            return np.zeros((0, 3)), np.zeros((0, 3))
        con = d.contact
        # a few contacts: selected in Python (numpy's per-call cost exceeds the work here)
        idx, adr, sign = [], [], []
        for i, ((g1, g2), a, dim) in enumerate(zip(con.geom.tolist(), con.efc_address.tolist(), con.dim.tolist())):
            if (g1 == geom or g2 == geom) and a >= 0 and dim == 3 and (other is None or g1 == other or g2 == other):
                idx.append(i)
                adr.append(a)
                sign.append(1.0 if g2 == geom else -1.0)
        if not idx:
            return np.zeros((0, 3)), np.zeros((0, 3))
        fc = d.efc_force[np.add.outer(adr, _XYZ)]                              # contact frame (k, 3)
        frame = con.frame[idx].reshape(-1, 3, 3)                               # rows: normal, t1, t2
        fw = np.einsum("kij,ki->kj", frame, fc)                                # force on geom2, world
        fw *= np.array(sign)[:, None]
        return con.pos[idx], fw

    def _normal_force(self, geom: int, other: int) -> float:
        d = self.data
        if d.ncon == 0:
            return 0.0
        con = d.contact
        adr = [a for (g1, g2), a in zip(con.geom.tolist(), con.efc_address.tolist())
               if a >= 0 and ((g1 == geom and g2 == other) or (g2 == geom and g1 == other))]
        if not adr:
            return 0.0
        return float(d.efc_force[adr].sum())

    def contact_normal_force(self, arm: str) -> float:
        """Ground truth: total normal force (N) between ``arm``'s pad and the task surface/object."""
        self._check_arm(arm)
        other = self._surface_geom if self.task == "wipe" else self._box_geom
        return self._normal_force(self._ids[arm]["pad_geom"], other)

    # ------------------------------------------------------------------ commands
    def _check_arm(self, arm: str) -> None:
        if arm not in self._ids:
            raise ValueError(f"unknown arm {arm!r} (choose from {', '.join(self.arms)})")

    def workspace(self, arm: str) -> Tuple[np.ndarray, np.ndarray]:
        self._check_arm(arm)
        lo, hi = self._scene.geometry[arm].workspace
        return lo.copy(), hi.copy()

    def home_pose(self, arm: str) -> Tuple[np.ndarray, np.ndarray]:
        self._check_arm(arm)
        g = self._scene.geometry[arm]
        return g.home_pos.copy(), wxyz_to_xyzw(g.home_quat_wxyz)

    def set_target(self, arm: str, pos, quat_xyzw) -> None:
        """Command the TCP pose (world frame, m; quaternion x, y, z, w). Invalid input raises
        ``ValueError`` and leaves the previous target in place."""
        self._check_arm(arm)
        try:
            p = np.asarray(pos, dtype=float).reshape(3)
            q = np.asarray(quat_xyzw, dtype=float).reshape(4)
        except (TypeError, ValueError):
            raise ValueError(f"set_target({arm}): pos must have 3 and quat 4 numbers") from None
        # checked on Python floats (called for every arm at the control rate; numpy's per-call
        # cost dominated): the same tests and values as with np.isfinite / np.linalg.norm
        pl, ql = p.tolist(), q.tolist()
        if not all(map(math.isfinite, pl + ql)):
            raise ValueError(f"set_target({arm}): NaN or Inf in pos {pl} / quat {ql}")
        nq = float(np.sqrt(q.dot(q)))
        if abs(nq - 1.0) > 1e-3:
            raise ValueError(f"set_target({arm}): quaternion norm {nq:.6f} is not 1 (tolerance 1e-3)")
        lo, hi = self._scene.geometry[arm].workspace
        if any(x < a or x > b for x, a, b in zip(pl, lo.tolist(), hi.tolist())):
            raise ValueError(f"set_target({arm}): position {p.round(4).tolist()} outside the workspace "
                             f"[{lo.tolist()}, {hi.tolist()}] m")
        mid = self._ids[arm]["mocap"]
        self.data.mocap_pos[mid] = p
        self.data.mocap_quat[mid] = (q / nq)[_XYZW_TO_WXYZ]

    # ------------------------------------------------------------------ sensors
    def observe(self, arm: str, tactile: bool = True) -> ArmState:
        """Proprioception, wrist wrench and tactile field of ``arm`` now. ``tactile=False``
        skips the marker field (an empty (0, 4) array), the costly part, for callers that
        publish the wrench faster than the tactile field.

        ``wrench`` is the external wrench on the tool as a tared wrist F/T sensor reports it:
        minus the wrench the impedance coupling transmits to the tool (its actuator forces),
        in the tool frame, torque about the TCP, plus seeded Gaussian noise. Pressing on a
        surface reads as a force along the pad's inward direction (wipe: +z tool)."""
        self._check_arm(arm)
        mj = self._mj
        m, d = self.model, self.data
        ids = self._ids[arm]
        tcp = ids["tcp"]
        pos = d.site_xpos[tcp].copy()
        R = d.site_xmat[tcp].reshape(3, 3)
        qw = np.zeros(4)
        mj.mju_mat2Quat(qw, d.site_xmat[tcp])
        vel = np.zeros(6)
        mj.mj_objectVelocity(m, d, mj.mjtObj.mjOBJ_SITE, tcp, vel, 0)
        if self.embodiment == "floating":
            a = d.actuator_force[ids["act"]:ids["act"] + 6]
            Rt = d.xmat[ids["target_body"]].reshape(3, 3)
            f_tool = -(R.T @ (Rt @ a[:3]))
            t_tool = -(R.T @ (Rt @ a[3:]))
        else:
            f_tool, t_tool = self._wrist_wrench(arm, pos)
        wrench = np.concatenate([f_tool, t_tool])
        if self._wrench_noise is not None:
            wrench += self._noise_rng.normal(0.0, 1.0, 6) * self._wrench_noise
        return ArmState(stamp=float(d.time), tcp_pos=pos, tcp_quat=qw[_WXYZ_TO_XYZW], tcp_linvel=vel[3:].copy(),
                        tcp_angvel=vel[:3].copy(), wrench=wrench,
                        tactile=self._tactile_field(arm) if tactile else np.zeros((0, 4), np.float32), gripper=None)

    def _wrist_wrench(self, arm: str, tcp: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The flange F/T sensor, tared for the tool's weight (payload compensation): the
        external force on the tool and its torque about the TCP, in the tool frame."""
        m, d = self.model, self.data
        ids = self._ids[arm]
        Rs = d.site_xmat[ids["ft_site"]].reshape(3, 3)
        # MuJoCo's force/torque sensors: what the tool's body receives from link 7 (site frame)
        f_in = Rs @ d.sensordata[ids["ft_force"]:ids["ft_force"] + 3]
        t_in = Rs @ d.sensordata[ids["ft_torque"]:ids["ft_torque"] + 3]
        weight = m.body_mass[ids["body"]] * m.opt.gravity
        f_ext = -f_in - weight
        t_ext = -(t_in + _cross(d.site_xpos[ids["ft_site"]] - tcp, f_in)) - _cross(d.xipos[ids["body"]] - tcp, weight)
        R = d.site_xmat[ids["tcp"]].reshape(3, 3)
        return R.T @ f_ext, R.T @ t_ext

    def _tactile_field(self, arm: str) -> np.ndarray:
        ids = self._ids[arm]
        d = self.data
        pos, fw = self._pad_contacts(ids["pad_geom"])
        Rp = d.site_xmat[ids["pad_site"]].reshape(3, 3)
        xyz = (pos - d.site_xpos[ids["pad_site"]]) @ Rp           # pad frame
        fp = fw @ Rp
        return self._tactile[arm].field(xyz[:, :2], -fp[:, 2], fp[:, :2], self._noise_rng, self.cfg.tactile_noise)

    def tactile_markers(self, arm: str) -> np.ndarray:
        """Rest positions (n, 2) of the markers in the pad frame."""
        self._check_arm(arm)
        return self._tactile[arm].markers.copy()

    # ------------------------------------------------------------------ cameras
    def _get_renderer(self):
        if not self.cfg.render:
            raise RuntimeError("rendering is off (SimConfig.render=False)")
        if self._renderer is None:
            self._renderer = self._mj.Renderer(self.model, self.cfg.camera_height, self.cfg.camera_width)
            flags = self._renderer.scene.flags
            flags[self._mj.mjtRndFlag.mjRND_REFLECTION] = False     # no mirror-like materials here
            flags[self._mj.mjtRndFlag.mjRND_SHADOW] = bool(self.cfg.shadows)
        return self._renderer

    def _check_camera(self, camera: str) -> None:
        if camera not in self._cam_id:
            raise ValueError(f"unknown camera {camera!r} (choose from {', '.join(self.cameras)})")

    def render(self, camera: str = "camera") -> np.ndarray:
        """RGB image (H, W, 3) uint8 of ``camera`` now."""
        self._check_camera(camera)
        r = self._get_renderer()
        r.update_scene(self.data, camera=camera)
        return r.render().copy()

    def render_depth(self, camera: str = "camera") -> np.ndarray:
        """Depth image (H, W) float32 in metres along the optical axis; 0 where nothing is within
        ``MAX_DEPTH`` (no return, as a depth camera reports it)."""
        self._check_camera(camera)
        r = self._get_renderer()
        r.enable_depth_rendering()
        try:
            r.update_scene(self.data, camera=camera)
            depth = r.render().astype(np.float32)
        finally:
            r.disable_depth_rendering()
        depth[depth > MAX_DEPTH] = 0.0
        return depth

    def camera_info(self, camera: str = "camera") -> CameraIntrinsics:
        self._check_camera(camera)
        w, h = self.cfg.camera_width, self.cfg.camera_height
        fovy = np.deg2rad(float(self.model.cam_fovy[self._cam_id[camera]]))
        f = 0.5 * h / np.tan(0.5 * fovy)
        return CameraIntrinsics(width=w, height=h, fx=float(f), fy=float(f), cx=(w - 1) / 2.0, cy=(h - 1) / 2.0,
                                frame_id=f"{camera}_color_optical_frame")

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------ plan and metrics
    def task_spec(self) -> Dict:
        """What the expert may know (what a real robot's task plan knows): arms, home poses,
        the force band, its own coupling stiffness, pad geometry and the task plan. Never the
        perturbations, the true surface height, or the box's mass and friction."""
        spec: Dict = {
            "task": self.task,
            "arms": list(self.arms),
            "dt": self.dt,
            "episode_seconds": self.episode_seconds,
            "force_band": list(self.force_band),
            "stiffness": float(self._scene.extras["gains"]["kp"]),
            "home": {a: [self.home_pose(a)[0].tolist(), self.home_pose(a)[1].tolist()] for a in self.arms},
            "pad_quat_tool_xyzw": {a: wxyz_to_xyzw(self._scene.geometry[a].pad_quat_tool_wxyz).tolist()
                                    for a in self.arms},
            "pad_half": {a: list(self._scene.geometry[a].pad_half) for a in self.arms},
            "workspace": {a: [x.tolist() for x in self._scene.geometry[a].workspace] for a in self.arms},
            "tactile_shape": [self.cfg.tactile_rows, self.cfg.tactile_cols],
        }
        if self.task == "wipe":
            spec.update({"path_xy": WIPE_PATH.tolist(), "surface_z": 0.0, "speed": WIPE_SPEED})
        else:
            spec.update({"box_pos": [0.0, 0.0, float(self._scene.extras["box_half"][2])],
                         "box_half": list(self._scene.extras["box_half"]), "lift_height": LIFT_HEIGHT,
                         "squeeze_limit": float(self.cfg.squeeze_limit)})
        return spec

    def force_trace(self) -> Tuple[np.ndarray, np.ndarray]:
        """(t, force) logged every tick: wipe normal force, lift squeeze force (N)."""
        return np.asarray(self._log_t), np.asarray(self._log_f)

    @property
    def force_name(self) -> str:
        return "normal force" if self.task == "wipe" else "squeeze force"

    def metrics(self) -> Dict:
        """JSON-serialisable metrics of the episode so far (definitions in the module docstring)."""
        t, f = self.force_trace()
        fm = force_metrics(t, f, self.force_band, self.perturbation_times)
        out: Dict = {"task": self.task, "embodiment": self.embodiment, "seed": self.seed, "duration": float(self.data.time),
                     "perturbation_times": self.perturbation_times,
                     "perturbations": self.perturbation_events()}
        out.update(fm)
        aux = np.asarray(self._log_aux, float)
        if self.task == "wipe":
            lo, hi = self.force_band
            inb = (f >= lo) & (f <= hi)
            covered = np.zeros(len(self._path_samples), bool)
            if inb.any():
                xy = aux[inb]
                for s in range(0, len(xy), 500):
                    dd = np.linalg.norm(self._path_samples[None, :, :] - xy[s:s + 500, None, :], axis=-1)
                    covered |= (dd <= WIPE_RADIUS).any(0)
            coverage = float(covered.mean())
            out["coverage"] = coverage
            out["slip_events"] = count_drops(t, f, 0.5, 0.02, fm["first_contact_time"])
            out["success"] = bool(coverage >= 0.9 and fm["time_in_band"] >= 0.8)
        else:
            box_z, pad_z, fl, fr = aux.T
            lift = box_z - self._box_z0
            rel = box_z - pad_z
            grasped = (fl >= 1.0) & (fr >= 1.0)
            slips: List[float] = []
            ref = None
            for ti, g, r in zip(t, grasped, rel):
                if not g:
                    ref = None
                    continue
                ref = r if ref is None else max(ref, r)
                if ref - r > SLIP_THRESHOLD:
                    slips.append(float(ti))
                    ref = r
            up = lift >= LIFT_SUCCESS_HEIGHT
            t_up = float(t[np.argmax(up)]) if up.any() else None
            # held: from first reaching the height to the end, never below it, no slip
            held = bool(t_up is not None and up[np.argmax(up):].all() and not [s for s in slips if s >= t_up])
            best = float(t[-1] - t_up) if held else 0.0
            out["slip_events"] = len(slips)
            out["slip_times"] = slips
            out["max_lift"] = float(lift.max()) if lift.size else 0.0
            out["hold_time"] = best
            out["squeeze_limit"] = float(self.cfg.squeeze_limit)
            out["box_mass"] = self._mass
            out["box_friction"] = self._mu
            out["lift_time"] = t_up
            out["success"] = bool(held and best >= LIFT_HOLD_SECONDS - 0.5 * self.dt * self._log_every
                                  and fm["peak_force"] <= self.cfg.squeeze_limit)
        return out


class SceneSpaces(NamedTuple):
    arms: tuple          # the scene's arm names
    cameras: tuple       # its camera names
    markers: int         # tactile markers per arm


@functools.lru_cache(maxsize=8)
def scene_spaces(task: str, embodiment: str) -> SceneSpaces:
    """What the checks before a run need of a scene (its arms, cameras, tactile markers),
    built once per (task, embodiment) in a process and closed: ``slowfast sim`` checks the
    interface and the policy against the same scene, ``bench sim`` reads its arms."""
    env = SimEnv(SimConfig(task=task, embodiment=embodiment, render=False))
    try:
        arms = tuple(env.arms)
        return SceneSpaces(arms, tuple(env.cameras), int(env.observe(arms[0]).tactile.shape[0]))
    finally:
        env.close()
