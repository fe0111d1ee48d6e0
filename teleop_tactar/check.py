"""Check a converted demonstration dataset for what a policy must not learn from.

Per episode, from the dataset's own frames (LeRobot v3 layout, :mod:`slowfast_data.writer`):

* ``start_gap_m``: distance from the commanded target to the measured TCP at frame 0, per
  arm (largest). A target far from the arm at the start is a lunge: a controller that
  carried over the last episode's target.
* ``max_gap_m``: the same over the whole episode; more than the safety filter's ``max_step``
  means the commands were not filtered.
* ``peak_command_speed_mps``: the fastest motion of the commanded target, against the
  filter's ``max_speed``: a lunge or an unfiltered command. Judged on the commands' own
  stamps when the converter measured it (10 % margin); from the frames otherwise, where
  resampling stretches a step by up to half a frame (50 % margin).
* ``peak_speed_mps``: the fastest measured TCP motion between two fresh frames. Reported, not
  judged: the arm's own dynamics are not the filter's to bound (recorded through the DDS
  stack on a 2-core machine, wipe episodes peak at 0.3-0.7 m/s under a 0.25 m/s command, with
  the sim's stalls; generated in process, 0.17-0.24 m/s).
* ``frozen_s``: the longest stretch over which the measured pose did not change at all
  while the command did (a stalled sensor stream resampled into the dataset).
* ``stale_fraction``: the share of frames the converter marked stale (some stream's sample
  farther from the frame time than its bound: a sensor or a simulator that stalled). Reported,
  not a defect by itself: a policy trained on it sees held readings there.
* per bag, what the converter dropped or marked and the largest offset it kept between a
  sample's stamp and its frame time (``meta/slowfast_conversion.json``).

An episode with any of these beyond its bound is a defect; ``slowfast dataset check``
exits 1 on defects, and the experiment runs it before training.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

CONVERSION_FILE = "slowfast_conversion.json"   # in meta/: what `slowfast convert` measured per bag
SPEED_MARGIN = 1.10          # on the commands' own stamps
FRAME_SPEED_MARGIN = 1.50    # from resampled frames
FROZEN_LIMIT_S = 0.2


@dataclass
class EpisodeReport:
    episode: int
    frames: int
    start_gap_m: float
    max_gap_m: float
    peak_command_speed_mps: float
    peak_speed_mps: float
    frozen_s: float
    stale_fraction: float | None = None
    defects: list = field(default_factory=list)


def _longest_frozen(pose: np.ndarray, action: np.ndarray) -> int:
    """Longest run of frames whose pose repeats the previous frame's exactly while the
    commanded target moves."""
    same = np.all(pose[1:] == pose[:-1], axis=1) & np.any(action[1:] != action[:-1], axis=1)
    best = run = 0
    for s in same:
        run = run + 1 if s else 0
        best = max(best, run)
    return best


def check_dataset(root: str | Path, max_step: float | None = None, max_speed: float | None = None) -> dict:
    """{"episodes": [EpisodeReport as dict], "defects": n, "conversion": {...} or None,
    "bounds": {...}}. Bounds default to the safety filter's defaults (policy.safety)."""
    from slowfast_data.features import ACTION_KEY, POSE_KEY
    from slowfast_data.reader import LeRobotDataset
    from policy.safety import SafetyConfig

    defaults = SafetyConfig()
    max_step = defaults.max_step if max_step is None else float(max_step)
    max_speed = defaults.max_speed if max_speed is None else float(max_speed)
    ds = LeRobotDataset(root, require=[POSE_KEY, ACTION_KEY])
    pose_all, action_all = ds.data[POSE_KEY].astype(np.float64), ds.data[ACTION_KEY].astype(np.float64)
    arms = range(ds.num_arms)
    conv_path = Path(root) / "meta" / CONVERSION_FILE
    conversion = json.loads(conv_path.read_text()) if conv_path.is_file() else None
    stamped = []   # per dataset episode, the command speed the converter measured on its bag
    for bag in (conversion or {}).get("bags", []):
        stamped += [bag.get("peak_command_speed_mps")] * int(bag.get("parts", 1))
    if len(stamped) != len(ds.ep_ids):
        stamped = [None] * len(ds.ep_ids)
    reports = []
    for k, e in enumerate(ds.ep_ids):
        sl = slice(ds.ep_start[e], ds.ep_end[e])
        pose, action = pose_all[sl], action_all[sl]
        gaps = np.stack([np.linalg.norm(action[:, 7 * a:7 * a + 3] - pose[:, 7 * a:7 * a + 3], axis=1)
                         for a in arms], axis=1).max(axis=1)
        stale = ds.data.get("stale")
        fresh = np.ones(len(pose), bool) if stale is None else stale[sl, 0] <= 0
        both = fresh[1:] & fresh[:-1]       # a step across a stale frame is a catch-up, not a speed

        def peak_speed(x):
            if not both.any():
                return 0.0
            v = np.stack([np.linalg.norm(np.diff(x[:, 7 * a:7 * a + 3], axis=0), axis=1) * ds.fps
                          for a in arms], axis=1).max(axis=1)
            return float(v[both].max())

        r = EpisodeReport(episode=e, frames=len(pose), start_gap_m=float(gaps[0]), max_gap_m=float(gaps.max()),
                          peak_command_speed_mps=stamped[k] if stamped[k] is not None else peak_speed(action),
                          peak_speed_mps=peak_speed(pose), frozen_s=_longest_frozen(pose, action) / ds.fps,
                          stale_fraction=None if stale is None else float((stale[sl] > 0).mean()))
        if r.start_gap_m > max_step:
            r.defects.append(f"lunge: target {r.start_gap_m * 100:.1f} cm from the arm at frame 0 "
                             f"(max_step {max_step * 100:.1f} cm)")
        elif r.max_gap_m > max_step * 1.001:
            r.defects.append(f"target up to {r.max_gap_m * 100:.1f} cm from the arm (max_step {max_step * 100:.1f} cm)")
        margin = SPEED_MARGIN if stamped[k] is not None else FRAME_SPEED_MARGIN
        if r.peak_command_speed_mps > max_speed * margin:
            r.defects.append(f"command speed {r.peak_command_speed_mps:.2f} m/s "
                             f"(limit {max_speed:.2f} m/s + {margin - 1:.0%})")
        if r.frozen_s > FROZEN_LIMIT_S:
            r.defects.append(f"pose frozen for {r.frozen_s:.2f} s while the command moved")
        reports.append(r)
    return {"episodes": [asdict(r) for r in reports], "defects": sum(bool(r.defects) for r in reports),
            "conversion": conversion, "bounds": {"max_step_m": max_step, "max_speed_mps": max_speed,
                                                 "speed_margin": SPEED_MARGIN, "frozen_s": FROZEN_LIMIT_S}}
