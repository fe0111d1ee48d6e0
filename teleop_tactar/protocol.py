"""The TactAR headset protocol (../shared/reference/tactar_protocol.md): parsing what the app
posts, and encoding the BSON feedback it expects. No sockets here, no ROS.

Headset -> PC: ``POST /unity`` with JSON ``{timestamp, rightHand, leftHand, headPos,
headQuat}``; a hand is ``{wristPos[3], wristQuat[4] (w, x, y, z), triggerState,
buttonState[5]}`` in the Unity frame. :func:`parse_hands` validates every field and raises
:class:`ProtocolError` with a short reason (used as the rejection counter's key).

PC -> headset, one BSON document per UDP datagram: robot state (10001), tactile arrows
(10002), log text (10003), camera images (10004, chunked: see :func:`chunk_image_document`),
force arrow (10005).
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field

import numpy as np

PORT_ROBOT_STATE = 10001
PORT_TACTILE = 10002
PORT_LOG = 10003
PORT_IMAGES = 10004
PORT_FORCE = 10005

# buttonState indices: right hand B, A, thumbstick, index trigger, hand trigger;
# left hand Y, X, thumbstick, index trigger, hand trigger.
BTN_UPPER, BTN_LOWER, BTN_STICK, BTN_INDEX, BTN_GRIP = range(5)
HANDS = ("left", "right")


class ProtocolError(ValueError):
    """A malformed message; ``reason`` is a short, stable key for the rejection counters."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Hand:
    pos: np.ndarray                    # (3,) Unity frame, m
    quat_wxyz: np.ndarray              # (4,) unit
    trigger: float                     # 0..1
    buttons: tuple = (False,) * 5

    @property
    def clutch(self) -> bool:
        return bool(self.buttons[BTN_GRIP])


@dataclass
class HandFrame:
    timestamp: float
    hands: dict = field(default_factory=dict)   # "left"/"right" -> Hand


def _vec(obj, key: str, n: int) -> np.ndarray:
    v = obj.get(key)
    if not isinstance(v, list) or len(v) != n:
        raise ProtocolError("bad_length", f"{key} must be a list of {n} numbers")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise ProtocolError("bad_type", f"{key} must hold numbers")
    a = np.array(v, dtype=float)
    if not np.isfinite(a).all():
        raise ProtocolError("not_finite", f"{key} has NaN or Inf")
    return a


def _hand(obj, name: str) -> Hand:
    if not isinstance(obj, dict):
        raise ProtocolError("bad_type", f"{name} must be an object")
    pos = _vec(obj, "wristPos", 3)
    if np.abs(pos).max() > 100.0:
        raise ProtocolError("out_of_range", f"{name}.wristPos beyond 100 m")
    q = _vec(obj, "wristQuat", 4)
    n = float(np.linalg.norm(q))
    if not 0.9 < n < 1.1:
        raise ProtocolError("out_of_range", f"{name}.wristQuat norm {n:.3g} is not 1")
    trig = obj.get("triggerState", 0.0)
    if not isinstance(trig, (int, float)) or isinstance(trig, bool) or not math.isfinite(trig):
        raise ProtocolError("bad_type", f"{name}.triggerState must be a number")
    buttons = obj.get("buttonState", [False] * 5)
    if not isinstance(buttons, list) or len(buttons) != 5:
        raise ProtocolError("bad_length", f"{name}.buttonState must be a list of 5 bools")
    if not all(isinstance(b, (bool, int)) for b in buttons):
        raise ProtocolError("bad_type", f"{name}.buttonState must hold bools")
    return Hand(pos, q / n, float(min(max(trig, 0.0), 1.0)), tuple(bool(b) for b in buttons))


def loads(body: bytes | str):
    """Decode one JSON message; ProtocolError("bad_json") for anything that is not JSON,
    including nesting too deep for the decoder (which raises RecursionError)."""
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", str(exc)[:80]) from None
    except RecursionError:
        raise ProtocolError("bad_json", "nested too deeply") from None


def parse_hands(body: bytes | str | dict) -> HandFrame:
    """The app's JSON (bytes, text or an already-decoded dict) -> HandFrame."""
    data = body if isinstance(body, dict) else loads(body)
    if not isinstance(data, dict):
        raise ProtocolError("bad_type", "body must be a JSON object")
    ts = data.get("timestamp", 0.0)
    if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not math.isfinite(ts):
        raise ProtocolError("bad_type", "timestamp must be a finite number")
    hands = {}
    for name, key in (("right", "rightHand"), ("left", "leftHand")):
        if key in data:
            hands[name] = _hand(data[key], key)
    if not hands:
        raise ProtocolError("no_hands", "neither rightHand nor leftHand")
    return HandFrame(float(ts), hands)


def hand_json(timestamp: float, hands: dict) -> dict:
    """Build the app's JSON (for emulated headsets and the scripted operator).
    ``hands``: {"right"/"left": (pos_unity, quat_wxyz, trigger, buttons[5])}."""
    out = {"timestamp": float(timestamp), "headPos": [0.0, 0.0, 0.0], "headQuat": [1.0, 0.0, 0.0, 0.0]}
    for name in HANDS:
        pos, quat, trig, buttons = hands.get(name, ([0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], 0.0, [False] * 5))
        out[f"{name}Hand"] = {"wristPos": [float(v) for v in pos], "wristQuat": [float(v) for v in quat],
                              "triggerState": float(trig), "buttonState": [bool(b) for b in buttons]}
    return out


# ---------------------------------------------------------------- feedback (BSON)


def _bson():
    import bson  # noqa: PLC0415 - pymongo's bson

    return bson


def robot_state_doc(tcp: dict, gripper: dict) -> bytes:
    """tcp: {"left"/"right": 7 floats (Unity x, y, z, qw, qx, qy, qz)}; gripper: {side: (width, force)}."""
    doc = {}
    for side in HANDS:
        doc[f"{side}RobotTCP"] = [float(v) for v in tcp.get(side, [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])]
        doc[f"{side}GripperState"] = [float(v) for v in gripper.get(side, (0.0, 0.0))]
    return _bson().encode(doc)


def arrows_doc(device_id: str, starts, ends, scale=(0.002, 0.5, 0.5)) -> bytes:
    arrows = [{"start": [float(v) for v in s], "end": [float(v) for v in e]} for s, e in zip(starts, ends)]
    return _bson().encode({"device_id": str(device_id), "arrows": arrows, "scale": [float(v) for v in scale]})


def force_doc(device_id: str, start, end, scale=(0.01, 1.0, 1.0)) -> bytes:
    return _bson().encode({"device_id": str(device_id),
                           "arrow": {"start": [float(v) for v in start], "end": [float(v) for v in end]},
                           "scale": [float(v) for v in scale]})


def log_doc(text: str) -> bytes:
    return _bson().encode({"text": str(text)})


def images_doc(images: list[dict]) -> bytes:
    """images: [{id, inHeadSpace, leftOrRight, position[3], rotation[4], scale[3], image: JPEG bytes}]."""
    out = []
    for im in images:
        out.append({"id": str(im["id"]), "inHeadSpace": bool(im.get("inHeadSpace", True)),
                    "leftOrRight": bool(im.get("leftOrRight", False)),
                    "position": [float(v) for v in im.get("position", (0.0, 0.0, 0.6))],
                    "rotation": [float(v) for v in im.get("rotation", (1.0, 0.0, 0.0, 0.0))],
                    "scale": [float(v) for v in im.get("scale", (0.32, 0.24, 1.0))],
                    "image": bytes(im["image"])})
    return _bson().encode({"images": out})


def chunk_image_document(doc: bytes, chunk: int = 60000) -> list[bytes]:
    """The datagrams of one image document: 4-byte LE length, 4-byte LE chunk size, then
    ceil(length / chunk) pieces of the document in order."""
    if not 1 <= chunk <= 65000:
        raise ValueError(f"chunk: {chunk} outside 1..65000 bytes")
    pieces = [doc[i:i + chunk] for i in range(0, len(doc), chunk)]
    return [struct.pack("<I", len(doc)), struct.pack("<I", chunk), *pieces]


class ImageReassembler:
    """The headset side of the image chunking (for tests and tools): feed datagrams in order,
    get the decoded document when complete.

    UDP loses datagrams and a receiver may start listening mid-document, so it resyncs on
    the next 4-byte length datagram: a document with a piece missing, or whose start it did
    not see, is dropped (counted in ``dropped``), never decoded from mixed pieces."""

    def __init__(self):
        self._state, self._length, self._buf = "length", 0, b""
        self.dropped = 0

    def feed(self, datagram: bytes):
        d = bytes(datagram)
        if self._state == "chunk":
            if len(d) == 4:            # the chunk size: the pieces say their own length
                self._state, self._buf = "data", b""
            else:                      # the chunk-size datagram was lost
                self.dropped += 1
                self._state = "length"
            return None
        if len(d) == 4 and not (self._state == "data" and self._length - len(self._buf) == 4):
            if self._state == "data":  # a new document began before this one was complete
                self.dropped += 1
            self._length, self._state = struct.unpack("<I", d)[0], "chunk"
            return None
        if self._state == "length":    # a piece of a document whose start was not seen
            return None
        self._buf += d
        if len(self._buf) < self._length:
            return None
        doc, self._state = self._buf[:self._length], "length"
        try:
            return _bson().decode(doc)
        except Exception:  # noqa: BLE001 - bson's InvalidBSON and friends: a lost or foreign piece
            self.dropped += 1
            return None
