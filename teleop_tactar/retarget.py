"""Clutch (relative) retargeting from a tracked hand to a TCP target, per arm. No ROS.

While the clutch (hand trigger) is held, the target is the TCP pose at clutch-in plus the
scaled displacement of the hand since clutch-in (world frame); the rotation is the hand's
rotation relative to its clutch-in rotation, applied to the TCP's clutch-in rotation
(``translation_only`` keeps the clutch-in rotation). The gripper width follows the index
trigger. When the target strays more than ``max_divergence`` from the measured TCP the arm
disengages: the operator must release and press the clutch again. So does an episode reset
(:meth:`Teleoperator.release`): the robot jumped home under the hand, and a clutch still held
must not carry on from there as if nothing happened.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slowfast_data.fields import described

from .frames import matrix_to_quat, quat_to_matrix, unity_to_world_pos, unity_to_world_rot


@dataclass
class RetargetConfig:
    """How a hand drives a TCP: the one definition of each value (default, meaning, range).
    teleop_node declares them as ``retarget.<name>`` parameters."""

    scale: float = described(1.0, "TCP metres per hand metre", 0.05, 10.0)
    translation_only: bool = described(False, "keep the TCP rotation of the clutch-in")
    max_divergence: float = described(0.3, "stop tracking when the target is this far from the TCP (m; > 0)",
                                      0.0, 2.0)
    gripper_open: float = described(0.08, "gripper width at trigger released (m)", 0.0, 0.5)
    gripper_closed: float = described(0.0, "gripper width at trigger pressed (m; <= gripper_open)", 0.0, 0.5)
    gripper_force: float = described(20.0, "gripper force limit sent with each width (N)")

    def __post_init__(self):
        if not 0.05 <= self.scale <= 10.0:
            raise ValueError(f"scale: {self.scale} outside 0.05..10")
        if not 0.0 < self.max_divergence <= 2.0:
            raise ValueError(f"max_divergence: {self.max_divergence} outside (0, 2] m")
        if not (0.0 <= self.gripper_closed <= self.gripper_open <= 0.5):
            raise ValueError(f"gripper_open/gripper_closed: need 0 <= closed ({self.gripper_closed}) "
                             f"<= open ({self.gripper_open}) <= 0.5 m")


@dataclass
class Target:
    pos: np.ndarray
    quat: np.ndarray          # x, y, z, w, world
    gripper_width: float


class ArmRetargeter:
    def __init__(self, cfg: RetargetConfig):
        self.cfg = cfg
        self.engaged = False
        self.diverged = 0
        self.held = False                  # the clutch was pressed in the last sample
        self.ref_stamp: float | None = None    # when the TCP pose of the clutch-in was measured
        self._need_release = False
        self._hand0 = self._rot_h0 = self._tcp0 = self._rot_t0 = None

    def reset(self) -> None:
        """Disengage (a lost headset, an arm disabled): the next clutch sample starts afresh."""
        self.engaged = self.held = False
        self._need_release = False

    def release(self, reset_stamp: float | None = None) -> bool:
        """Disengage and require a fresh clutch press (an episode reset at ``reset_stamp``): a
        clutch still held moves nothing until it has been let go. An arm that clutched in on a
        TCP pose measured at or after ``reset_stamp`` is left alone (news of the reset came
        late: its reference is already the reset robot). True when this released a clutch
        that was held (not when a clutch already released by an earlier call is still held)."""
        if (self.engaged and reset_stamp is not None and self.ref_stamp is not None
                and self.ref_stamp >= reset_stamp):
            return False
        newly = (self.held or self.engaged) and not self._need_release
        if self.held or self.engaged:
            self._need_release = True
        self.engaged = False
        return newly

    def update(self, hand, tcp_pos, tcp_quat, tcp_stamp: float | None = None) -> Target | None:
        """One hand sample (``protocol.Hand``, Unity frame) and the measured TCP (measured at
        ``tcp_stamp``) -> a target, or None when the arm must not move (clutch released, no
        TCP, diverged)."""
        self.held = hand.clutch
        if not hand.clutch:
            self.engaged = False
            self._need_release = False
            return None
        if self._need_release or tcp_pos is None or not np.isfinite(tcp_pos).all():
            return None
        h_pos = unity_to_world_pos(hand.pos)
        h_rot = unity_to_world_rot(hand.quat_wxyz)
        if not self.engaged:
            self.engaged = True
            self._hand0, self._rot_h0 = h_pos, h_rot
            self._tcp0, self._rot_t0 = np.asarray(tcp_pos, float).copy(), quat_to_matrix(tcp_quat)
            self.ref_stamp = tcp_stamp
        pos = self._tcp0 + self.cfg.scale * (h_pos - self._hand0)
        if self.cfg.translation_only:
            rot = self._rot_t0
        else:
            rot = (h_rot @ self._rot_h0.T) @ self._rot_t0
        if np.linalg.norm(pos - np.asarray(tcp_pos, float)) > self.cfg.max_divergence:
            self.engaged = False
            self._need_release = True
            self.diverged += 1
            return None
        c = self.cfg
        width = c.gripper_open + hand.trigger * (c.gripper_closed - c.gripper_open)
        return Target(pos, matrix_to_quat(rot), float(width))


def hand_for_target(target_pos, target_quat, tcp0_pos, tcp0_quat, hand0_world=np.zeros(3),
                    scale: float = 1.0):
    """Inverse of the clutch mapping, for a scripted operator: the hand pose (Unity position,
    w, x, y, z quaternion) that makes the retargeter command ``target`` when it clutched in
    with the TCP at ``tcp0`` and the hand at ``hand0_world`` with identity rotation."""
    from .frames import world_to_unity_pos, world_to_unity_quat  # noqa: PLC0415

    h_pos = np.asarray(hand0_world, float) + (np.asarray(target_pos, float) - np.asarray(tcp0_pos, float)) / scale
    h_rot = quat_to_matrix(target_quat) @ quat_to_matrix(tcp0_quat).T
    return world_to_unity_pos(h_pos), world_to_unity_quat(h_rot)


# Headset buttons -> recorder commands (pressed edges): right A start, right B stop as a
# success, left X stop as a failure, left Y discard. A thumbstick click enables or disables
# the arms that hand drives.
BTN_STICK = 2
BUTTON_COMMANDS = {("right", 1): "start", ("right", 0): "success", ("left", 1): "failure", ("left", 0): "discard"}
#: The commands that close a demonstration also end the sim episode when the sim runs in its
#: operator mode (``sim_node.episode_end: operator``): the next demonstration starts afresh.
EPISODE_END_COMMANDS = ("success", "failure", "discard")


def default_hands(arms) -> list[str]:
    """The headset hand that drives each arm by default: a "left"/"right" arm its own hand,
    a single arm of another name the right hand."""
    return [a if a in ("left", "right") else "right" for a in arms]


#: a headset silent this long (s) disengages every arm (teleop_node's ``deadline``)
SILENCE_DEADLINE = 0.25


class Teleoperator:
    """All arms of one operator: which hand drives which arm, the clutch per arm, the
    recorder buttons and the silence deadline.

    ``arm_hands``: {arm: "left" | "right"}; an arm not listed (or disabled) never moves.
    """

    def __init__(self, arm_hands: dict, cfg: RetargetConfig, deadline: float = SILENCE_DEADLINE):
        if not 0.02 <= deadline <= 5.0:
            raise ValueError(f"deadline: {deadline} outside 0.02..5 s")
        for arm, hand in arm_hands.items():
            if hand not in ("left", "right"):
                raise ValueError(f"hands: arm {arm!r} mapped to {hand!r}, not left or right")
        self.arm_hands = dict(arm_hands)
        self.enabled = {a: True for a in arm_hands}
        self.arms = {a: ArmRetargeter(cfg) for a in arm_hands}
        self.deadline = deadline
        self.last_frame_time = float("-inf")
        self.timeouts = 0
        self._buttons: dict = {}

    def on_frame(self, frame, tcp: dict, now: float, tcp_stamps: dict | None = None) -> tuple[dict, list]:
        """frame: protocol.HandFrame; tcp: {arm: (pos, quat) or None}; tcp_stamps: {arm: when
        that pose was measured} (for :meth:`release`). Returns ({arm: Target}, [recorder
        commands])."""
        self.last_frame_time = now
        commands = []
        for side, hand in frame.hands.items():
            prev = self._buttons.get(side, (False,) * 5)
            for i, (was, now_b) in enumerate(zip(prev, hand.buttons)):
                if now_b and not was and (side, i) in BUTTON_COMMANDS:
                    commands.append(BUTTON_COMMANDS[(side, i)])
                if now_b and not was and i == BTN_STICK:      # thumbstick click: enable/disable that hand's arms
                    for arm, s in self.arm_hands.items():
                        if s == side:
                            self.enabled[arm] = not self.enabled[arm]
                            self.arms[arm].reset()
            self._buttons[side] = hand.buttons
        targets = {}
        for arm, side in self.arm_hands.items():
            hand = frame.hands.get(side)
            if hand is None or not self.enabled[arm]:
                self.arms[arm].reset()
                continue
            pos, quat = tcp.get(arm) or (None, None)
            t = self.arms[arm].update(hand, pos, quat, (tcp_stamps or {}).get(arm))
            if t is not None:
                targets[arm] = t
        return targets, commands

    def check_deadline(self, now: float) -> bool:
        """True while the headset is live; when it has been silent longer than the deadline,
        every arm disengages (the safety filter then holds) and False is returned."""
        if now - self.last_frame_time <= self.deadline:
            return True
        if any(r.engaged for r in self.arms.values()):
            self.timeouts += 1
            for r in self.arms.values():
                r.reset()
        return False

    def reset(self) -> None:
        for r in self.arms.values():
            r.reset()

    def release(self, reset_stamp: float | None = None) -> list:
        """An episode reset (at ``reset_stamp``, the clock of ``tcp_stamps``): every arm that
        clutched in before it disengages and needs a fresh clutch press. Returns the arms
        whose clutch was held (the operator must be told)."""
        return [a for a, r in self.arms.items() if r.release(reset_stamp)]
