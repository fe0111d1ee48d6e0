"""Scripted demonstrations through the teleop path, in one process, faster than real time.

The same chain as ``slowfast record --operator scripted`` (sim expert -> scripted operator
-> the app's JSON -> the server's clutch retargeting -> the safety filter -> the arm), but
stepped with the synchronous sim instead of five processes over DDS: no stalls, no stale
readings, deterministic per seed, several times faster than real time on one core. The app's
messages come at ``app_hz`` and ``delay_ticks`` of them late (what the server, the filter
node and DDS add), the safety filter runs at ``control_hz`` on the measured state.

Use :class:`TeleopEpisodeRunner` as the ``episode_runner`` of
:func:`sim.datagen.generate_dataset`; the dataset's action is the filtered command, as in a
recording.
"""
from __future__ import annotations

import collections
import copy
from dataclasses import dataclass

import numpy as np

from .operator import ScriptedOperator
from .protocol import parse_hands
from .retarget import RetargetConfig, Teleoperator, default_hands


@dataclass
class TeleopTiming:
    app_hz: float = 60.0        # the headset app's message rate
    delay_ticks: int = 2        # app messages this many of its ticks late
    control_hz: float = 200.0   # the safety filter's rate (safety_node's control_hz)

    def __post_init__(self):
        if not 1.0 <= self.app_hz <= 500.0:
            raise ValueError(f"app_hz: {self.app_hz} outside 1..500")
        if not 0 <= self.delay_ticks <= 30:
            raise ValueError(f"delay_ticks: {self.delay_ticks} outside 0..30")
        if not 1.0 <= self.control_hz <= 1000.0:
            raise ValueError(f"control_hz: {self.control_hz} outside 1..1000")


@dataclass
class TeleopEpisodeRunner:
    """An ``(env, on_step) -> metrics`` episode runner: one episode of the scripted operator
    through the teleop path. ``on_step(t, states, command)`` is called at every safety-filter
    tick with the measured states and the filtered command {arm: (pos, quat)}. An object, not
    a closure, so that worker processes can take it (``slowfast demos --workers``)."""
    safety_config: object
    timing: TeleopTiming | None = None
    retarget: RetargetConfig | None = None

    def __call__(self, env, on_step=None) -> dict:
        from slowfast_data.geometry import quat_to_matrix_one
        from policy.safety import SafetyFilter

        timing = self.timing or TeleopTiming()
        retarget = self.retarget or RetargetConfig()
        hands = dict(zip(env.arms, default_hands(env.arms)))
        op = ScriptedOperator(env.task, env.task_spec(), hands)
        server = Teleoperator(hands, retarget)
        filters = {a: SafetyFilter(self.safety_config) for a in env.arms}
        for a in env.arms:
            s = env.observe(a)
            filters[a].reset(s.tcp_pos, s.tcp_quat)     # the node restarts at each episode start
        app_every = max(1, int(round(1.0 / (timing.app_hz * env.dt))))
        ctl_every = max(1, int(round(1.0 / (timing.control_hz * env.dt))))
        late = collections.deque(maxlen=timing.delay_ticks + 1)
        targets, stamp, step = {}, None, 0
        while not env.done:
            t = env.time
            states = {a: env.observe(a) for a in env.arms}
            if step % app_every == 0:
                late.append((t, copy.deepcopy(states)))
                t_seen, seen = late[0]
                tcp = {a: (s.tcp_pos, s.tcp_quat) for a, s in seen.items()}
                new, _ = server.on_frame(parse_hands(op.message(t_seen, seen)), tcp, t)
                targets.update(new)
                stamp = t
            if step % ctl_every == 0:
                cmd = {}
                for a, s in states.items():
                    force = quat_to_matrix_one(s.tcp_quat) @ np.asarray(s.wrench[:3])
                    tgt = targets.get(a)
                    pos, quat = filters[a].filter(t, None if tgt is None else tgt.pos,
                                                  None if tgt is None else tgt.quat,
                                                  None if tgt is None else stamp,
                                                  s.tcp_pos, s.tcp_quat, force, t)
                    env.set_target(a, pos, quat)
                    cmd[a] = (pos, quat)
                if on_step is not None:
                    on_step(t, states, cmd)
            env.step(1)
            step += 1
        return env.metrics()
