"""Discrete navigation actions and a strict parser for the model's answer.

The published model answers with up to four symbols per turn: ``↑`` (MOVE FORWARD 25 cm),
``←`` (TURN LEFT 15°), ``→`` (TURN RIGHT 15°) or ``STOP``. The published parser picks any
matching substring out of arbitrary text and pads short answers with invented turns; this one
accepts only an answer made entirely of action symbols (the word forms too), and anything else
becomes a single STOP with a counted reason, so a confused model halts the robot instead of
moving it.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Action(enum.IntEnum):
    """Index order follows the published code (STOP=0, ↑=1, ←=2, →=3)."""

    STOP = 0
    MOVE_FORWARD = 1
    TURN_LEFT = 2
    TURN_RIGHT = 3

    @property
    def symbol(self) -> str:
        return _SYMBOL[self]

    @property
    def forward_m(self) -> float:
        """Distance travelled along the robot's heading, metres."""
        return 0.25 if self is Action.MOVE_FORWARD else 0.0

    @property
    def yaw_rad(self) -> float:
        """Heading change, radians, counter-clockwise positive (left)."""
        step = 15.0 * 3.141592653589793 / 180.0
        return step if self is Action.TURN_LEFT else (-step if self is Action.TURN_RIGHT else 0.0)


_SYMBOL = {Action.STOP: "STOP", Action.MOVE_FORWARD: "\u2191", Action.TURN_LEFT: "\u2190",
           Action.TURN_RIGHT: "\u2192"}

# Longest alternatives first so that "MOVE FORWARD" wins over any prefix of it.
_TOKENS = [
    ("MOVE FORWARD", Action.MOVE_FORWARD), ("TURN LEFT", Action.TURN_LEFT),
    ("TURN RIGHT", Action.TURN_RIGHT), ("STOP", Action.STOP),
    ("\u2191", Action.MOVE_FORWARD), ("\u2190", Action.TURN_LEFT), ("\u2192", Action.TURN_RIGHT),
]
_TOKEN_RE = re.compile("|".join(re.escape(t) for t, _ in _TOKENS))
_LOOKUP = dict(_TOKENS)
_SEPARATORS = set(" \t\r\n,")


@dataclass(frozen=True)
class ParseResult:
    actions: tuple[Action, ...]
    ok: bool
    reason: str  # "ok" or why the answer was rejected (then actions == (STOP,))


def format_actions(actions) -> str:
    """The answer text the model is trained to produce, e.g. ``↑↑←STOP``."""
    return "".join(Action(a).symbol for a in actions)


def parse_actions(text: str, max_actions: int = 4, end_markers: tuple[str, ...] = ("<|im_end|>",)) -> ParseResult:
    """Parse one answer strictly.

    Accepted: 1..``max_actions`` action symbols or words, optionally separated by spaces or
    commas, optionally followed by an end marker (and nothing after it). ``STOP`` may only be
    last. Everything else is rejected with a reason and turned into ``(STOP,)``.
    """
    if not isinstance(text, str):
        return _reject("not_text")
    body = text
    for marker in end_markers:
        if marker and marker in body:
            body, _, rest = body.partition(marker)
            if rest.strip():
                return _reject("text_after_end")
    actions: list[Action] = []
    pos = 0
    while pos < len(body):
        if body[pos] in _SEPARATORS:
            pos += 1
            continue
        m = _TOKEN_RE.match(body, pos)
        if m is None:
            return _reject("unknown_text")
        actions.append(_LOOKUP[m.group(0)])
        pos = m.end()
    if not actions:
        return _reject("empty")
    if len(actions) > max_actions:
        return _reject("too_many_actions")
    if Action.STOP in actions[:-1]:
        return _reject("action_after_stop")
    return ParseResult(tuple(actions), True, "ok")


def _reject(reason: str) -> ParseResult:
    return ParseResult((Action.STOP,), False, reason)
