"""UDP feedback to the headset app: one BSON document per datagram on the app's ports
(images chunked). Sends never block; a failed send is counted, never raised."""
from __future__ import annotations

import socket
from collections import Counter

import numpy as np

from . import protocol as P


class FeedbackSender:
    def __init__(self, port_offset: int = 0):
        self.host: str | None = None            # the headset; set from the first hand message
        self.port_offset = port_offset          # tests shift the app's ports to free ones
        self.sent: Counter = Counter()
        self.errors = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def _send(self, port: int, data: bytes, what: str) -> None:
        if self.host is None:
            return
        try:
            self._sock.sendto(data, (self.host, port + self.port_offset))
            self.sent[what] += 1
        except OSError:
            self.errors += 1

    def robot_state(self, tcp: dict, gripper: dict) -> None:
        self._send(P.PORT_ROBOT_STATE, P.robot_state_doc(tcp, gripper), "robot_state")

    def tactile(self, device_id: str, starts, ends, scale=(0.002, 0.5, 0.5)) -> None:
        self._send(P.PORT_TACTILE, P.arrows_doc(device_id, starts, ends, scale), "tactile")

    def force(self, device_id: str, start, end, scale=(0.01, 1.0, 1.0)) -> None:
        self._send(P.PORT_FORCE, P.force_doc(device_id, start, end, scale), "force")

    def log(self, text: str) -> None:
        self._send(P.PORT_LOG, P.log_doc(text), "log")

    def images(self, images: list[dict], chunk: int = 8192) -> None:
        for dgram in P.chunk_image_document(P.images_doc(images), chunk):
            self._send(P.PORT_IMAGES, dgram, "image_datagram")
        self.sent["images"] += 1

    def close(self) -> None:
        self._sock.close()


def marker_arrows(markers: np.ndarray, gain: float = 20.0):
    """Tactile marker field (N, 4: x, y, dx, dy, pad frame, m) -> arrow starts and ends in
    the pad plane (Unity-style x, y, z, displacement magnified by ``gain``); lost markers
    (NaN) are left out."""
    m = np.asarray(markers, float)
    ok = np.isfinite(m).all(axis=1)
    m = m[ok]
    starts = np.stack([m[:, 0], m[:, 1], np.zeros(len(m))], axis=1)
    ends = starts + gain * np.stack([m[:, 2], m[:, 3], np.zeros(len(m))], axis=1)
    return starts, ends


def encode_jpeg(rgb: np.ndarray, quality: int = 70) -> bytes:
    import cv2  # noqa: PLC0415

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
