"""A scripted operator: the sim's expert, driving the robot the way a person with the
headset would, through the teleop server's HTTP endpoint (the app's JSON, clutch held).

Each tick the expert computes the TCP target from the arm state; the operator turns it into
the hand pose that the clutch mapping maps onto that target (the inverse of the
headset -> robot mapping, relative to the TCP pose at clutch-in). No ROS, no sockets: the
node feeds states in and posts what :meth:`message` returns.
"""
from __future__ import annotations

import numpy as np

from .protocol import BTN_GRIP, hand_json
from .retarget import hand_for_target

HAND0_WORLD = np.array([0.3, 0.0, 1.0])   # where the virtual hand rests at clutch-in (world axes, m)


#: Force-loop time constants of the expert when it drives through the teleop path. The lift
#: expert's own 30 ms squeeze loop suits its 200 Hz in-process loop; here it runs at the app's
#: 60 Hz behind the safety filter's acceleration limit, where that gain rings: the paddle forces
#: never settle within 25 % of the target for the 0.2 s the expert waits before lifting. Run
#: in-process (60 Hz, two ticks of delay, the safety filter at 200 Hz, 8 perturbed seeds): 30 ms
#: lifted 0/8, 80 ms (the wipe expert's own loop, closer to a person's hand) 8/8.
TELEOP_EXPERT_KW = {"wipe": {}, "lift": {"loop_tau": 0.08}}


class ScriptedOperator:
    def __init__(self, task: str, task_spec: dict, arm_hands: dict, scale: float = 1.0):
        from sim import make_expert  # noqa: PLC0415

        self.expert = make_expert(task, task_spec, **TELEOP_EXPERT_KW.get(task, {}))
        self.expert.reset()
        self.arm_hands = dict(arm_hands)
        self.scale = scale
        self.tcp0: dict | None = None

    def idle_message(self, t: float) -> dict:
        """Clutch released: the robot holds (before the episode, after it, on stale input).

        The next :meth:`message` clutches in again at the TCP pose of that moment, as the
        server does: keeping the old reference would shift every later target by the
        tracking error at the re-clutch (in contact: the whole squeeze or pressing depth)."""
        self.tcp0 = None
        rest = hand_for_target(np.zeros(3), [0, 0, 0, 1.0], np.zeros(3), [0, 0, 0, 1.0], HAND0_WORLD, self.scale)
        return hand_json(t, {side: (*rest, 0.0, [False] * 5) for side in self.arm_hands.values()})

    def message(self, t: float, states: dict) -> dict:
        """states: {arm: sim.ArmState} with ``stamp`` = seconds since the episode start.
        The first call clutches in at the current TCP pose."""
        if self.tcp0 is None:
            self.tcp0 = {a: (np.array(s.tcp_pos), np.array(s.tcp_quat)) for a, s in states.items()}
            targets = {a: self.tcp0[a] for a in states}
        else:
            targets = self.expert.act(t, states)
        hands = {}
        for arm, side in self.arm_hands.items():
            pos, quat = targets[arm]
            p0, q0 = self.tcp0[arm]
            hp, hq = hand_for_target(pos, quat, p0, q0, HAND0_WORLD, self.scale)
            buttons = [False] * 5
            buttons[BTN_GRIP] = True
            hands[side] = (hp, hq, 0.0, buttons)
        return hand_json(t, hands)
