"""What the teleop feedback thread sends the operator each tick, and at which rates, without
ROS: the node hands in the arms' latest states and the camera's latest image, this turns them
into the headset's datagrams (:class:`teleop_tactar.feedback.FeedbackSender`) and the WebXR
pages' messages.

Every tick (``feedback_hz``): the robot state (TCP poses in Unity axes, the gripper) to the
headset. Every ``feedback_hz / tactile_hz``-th tick: the tactile arrows and the wrist force
arrow to the headset, and the page's state message (TCPs, clutches, the recorder's line,
arrows and forces). Every ``feedback_hz / camera_hz``-th tick: the camera as a JPEG to both.
The rates are whole divisions of the tick so that the arrows and images stay evenly spaced.

The headset's address is the one its hand messages come from, unless a fixed one is given;
a WebXR page (client ``ws:...``) is answered over its WebSocket, never by UDP.
"""
from __future__ import annotations

import base64

import numpy as np

from .feedback import FeedbackSender, encode_jpeg, marker_arrows
from .frames import pose_to_unity, quat_to_matrix, world_to_unity_pos

#: metres of force arrow per newton (the wrist force drawn at the TCP)
FORCE_ARROW_M_PER_N = 0.01


def every_nth(tick_hz: float, hz: float) -> int:
    """Send on every n-th tick of a ``tick_hz`` loop for about ``hz`` (at least every tick)."""
    return max(1, int(round(tick_hz / hz)))


class HeadsetFeedback:
    def __init__(self, side_of: dict, gripper_open: float, feedback_hz: float, tactile_hz: float,
                 camera_hz: float, camera: str = "", port_offset: int = 0, headset_host: str = ""):
        self.side_of = dict(side_of)          # {arm: the hand driving it}
        self.gripper_open = gripper_open
        self.camera = camera
        self.tactile_every = every_nth(feedback_hz, tactile_hz)
        self.camera_every = every_nth(feedback_hz, camera_hz)
        self.sender = FeedbackSender(port_offset)
        self.fixed_host = bool(headset_host)
        if headset_host:
            self.sender.host = headset_host
        self.ticks = 0

    def heard_from(self, client: str) -> None:
        """A hand message came from ``client``: the headset's UDP feedback goes there."""
        if not self.fixed_host and not client.startswith("ws:"):
            self.sender.host = client

    def tick(self, arm_states: dict, page_state, rgb, pages) -> None:
        """One feedback tick. ``arm_states``: {arm: state with ``tcp_pos``, ``tcp_quat``,
        ``pose_stamp`` (NaN = none yet), ``tactile`` (marker field) and ``wrench``};
        ``page_state()``: the page's ``engaged`` and ``recorder`` entries; ``rgb()``: the
        camera's latest image (None = none; ValueError = not an image); ``pages``: the
        server (``clients``, ``broadcast``)."""
        self.ticks += 1
        tcp, grip = {}, {}
        for arm, s in arm_states.items():
            if np.isfinite(s.pose_stamp):
                tcp[self.side_of[arm]] = pose_to_unity(s.tcp_pos, s.tcp_quat)
                grip[self.side_of[arm]] = (self.gripper_open, 0.0)
        self.sender.robot_state(tcp, grip)
        page = None
        if self.ticks % self.tactile_every == 0:
            page = {"type": "state", "tcp": tcp, **page_state(), "tactile": {}, "force": {}}
            for arm, s in arm_states.items():
                self._arrows(arm, s, page)
        jpeg = self._camera(rgb) if self.ticks % self.camera_every == 0 else None
        if pages.clients:
            if jpeg is not None:
                pages.broadcast({"type": "image", "id": self.camera, "jpeg": base64.b64encode(jpeg).decode()})
            if page is not None:
                pages.broadcast(page)

    def _arrows(self, arm: str, s, page: dict) -> None:
        if s.tactile.size:
            starts, ends = marker_arrows(s.tactile)
            self.sender.tactile(f"{arm}_tactile", starts, ends)
            page["tactile"][arm] = np.round(np.concatenate([starts[:, :2], ends[:, :2]], 1), 5).tolist()
        if np.isfinite(s.wrench).all() and np.isfinite(s.pose_stamp):
            f_world = quat_to_matrix(s.tcp_quat) @ s.wrench[:3]
            end = s.tcp_pos + FORCE_ARROW_M_PER_N * f_world
            self.sender.force(f"{arm}_force", world_to_unity_pos(s.tcp_pos), world_to_unity_pos(end))
            page["force"][arm] = np.round(f_world, 3).tolist()

    def _camera(self, rgb) -> bytes | None:
        jpeg = None
        try:
            img = rgb()
            if img is not None and img.ndim == 3:
                jpeg = encode_jpeg(img)
                self.sender.images([{"id": self.camera, "image": jpeg}])
        except ValueError:
            pass
        return jpeg

    def close(self) -> None:
        self.sender.close()
