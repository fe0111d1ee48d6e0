"""Log lines for the operator: what the headset shows on its log port (UDP 10003, the
protocol's ``text``) and the web page in its log. No ROS, no sockets: the teleop node feeds
in the events it subscribes to (sim episodes, the recorder's episode events, the safety
filter's diagnostics) and sends the lines these functions return.
"""
from __future__ import annotations

import re

#: Safety-filter interventions (``policy.safety.REASONS``) reported to the operator by default.
#: Left out: ``no_command`` (the filter holds whenever the clutch is released, as it should),
#: ``plant_reset`` (an episode reset, told on its own), ``speed`` and ``acceleration`` (the
#: filter shaping a fast hand: every quick motion would print a line).
REPORTED_INTERVENTIONS = ("estop", "force_limit", "workspace", "tracking", "stale_contact",
                          "invalid_contact", "nonfinite_command")

INTERVENTION_TEXT = {
    "estop": "e-stop engaged: holding",
    "force_limit": "force limit: backing off",
    "workspace": "target outside the workspace: clamped",
    "tracking": "target too far ahead of the arm: limited",
    "stale_contact": "contact data stale: holding",
    "invalid_contact": "contact data invalid: holding",
    "nonfinite_command": "invalid command: holding",
    "speed": "speed limited",
    "acceleration": "acceleration limited",
    "no_command": "no command: holding",
    "plant_reset": "plant reset: restarted from the measured pose",
}

END_REASON_TEXT = {"operator": "on request", "time_limit": "time limit reached", "task_length": "task length"}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def episode_started(event: dict) -> str:
    """The line for a ``sim/episode`` start event."""
    line = f"episode {event.get('episode', '?')} started"
    limit = event.get("max_seconds")
    if event.get("episode_end") == "operator" and isinstance(limit, (int, float)):
        line += f" (ends on your request or after {_minutes(float(limit))})"
    return line


def episode_ended(event: dict) -> str:
    """The line for a ``sim/episode`` end event."""
    why = END_REASON_TEXT.get(event.get("reason"), "")
    success = (event.get("metrics") or {}).get("success")
    line = f"episode {event.get('episode', '?')} ended" + (f" ({why})" if why else "")
    if isinstance(success, bool):
        line += f"; the sim's task check {'passed' if success else 'failed'}"
    return line


def clutch_released(arms: list) -> str:
    """The line when an episode reset released clutches that were held."""
    return f"episode reset: clutch released ({', '.join(arms)}); let go and press it again to move"


def headset_silent(deadline: float) -> str:
    """The line when the headset fell silent with a clutch held, and every arm disengaged."""
    return (f"headset silent for over {deadline:g} s: arms stopped; with the clutch held they follow again "
            "from where your hand is then")


def diverged(arm: str, limit: float) -> str:
    """The line when an arm's target strayed too far from its TCP and tracking stopped."""
    return f"{arm}: target over {limit:g} m from the arm: tracking stopped; let go and press the clutch again"


def recorder_event(event: dict) -> str | None:
    """The line for one of the recorder's episode events (``recorder/events``)."""
    kind, name = event.get("event"), event.get("episode", "")
    if kind == "started":
        return f"recording {name}"
    if kind == "saved":
        outcome = event.get("outcome")
        return f"saved {name}" + (f" ({outcome})" if outcome else "")
    if kind == "discarded":
        return f"discarded {name}"
    if kind == "error":
        return f"recorder: {event.get('text', 'error')}"
    return None


_INTERVENTION_KEY = re.compile(r"^(?P<arm>.*)/interventions/(?P<reason>\w+)$")


class InterventionWatch:
    """Onsets of safety-filter interventions from its diagnostics values (``<arm>/interventions/
    <reason>``: counts, as strings or numbers). A reason is reported when its count rises after
    a report in which it did not: a hold that lasts ten seconds is one line, not ten. The
    first report only sets the baseline (counts from before the operator joined)."""

    def __init__(self, reasons=REPORTED_INTERVENTIONS):
        unknown = sorted(set(reasons) - set(INTERVENTION_TEXT))
        if unknown:
            raise ValueError(f"safety interventions: unknown reason(s) {', '.join(unknown)} "
                             f"(known: {', '.join(INTERVENTION_TEXT)})")
        self.reasons = tuple(reasons)
        self._counts: dict = {}
        self._rising: set = set()

    def update(self, values: dict) -> list[str]:
        lines = []
        for key, value in values.items():
            m = _INTERVENTION_KEY.match(str(key))
            if m is None or m["reason"] not in self.reasons:
                continue
            try:
                n = float(value)
            except (TypeError, ValueError):
                continue
            prev = self._counts.get(key)
            self._counts[key] = n
            rising = prev is not None and n > prev
            if rising and key not in self._rising:
                arm = m["arm"]
                lines.append(f"safety: {arm + ': ' if arm else ''}{INTERVENTION_TEXT[m['reason']]}")
            if rising:
                self._rising.add(key)
            else:
                self._rising.discard(key)
        return lines
