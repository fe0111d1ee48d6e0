"""Recorded episode bags -> a LeRobot-v3-layout dataset (:mod:`slowfast_data.writer`).

Per bag: every stream is resampled by capture stamp (``header.stamp``) onto one frame grid
at ``fps`` (the dataset's single rate, which the contract requires of videos too): TCP pose,
wrench and tactile take the sample nearest each frame time; camera images the newest frame
at or before it (a 30 Hz camera repeats frames on a faster grid). Actions are the commanded
target in force at each frame (``action="target"``, ``<arm>/target_tcp``) or the next
frame's measured TCP pose (``action="next_pose"``). Tactile marker fields and the wrench
are features of their own. The grid starts when every stream has data (and not before the
sim's episode start, when the bag holds ``sim/episode``) and ends when one runs out.

No ROS imports: messages are decoded with the schemas stored in the bag (mcap_ros2).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from policy.rdp.contract import frame_features
from slowfast_data.features import ACTION_KEY, IMAGE_PREFIX, POSE_KEY, per_arm

from .bag import open_bag

ACTIONS = ("target", "next_pose")


def _stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def _image(msg) -> np.ndarray:
    if msg.encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"image encoding {msg.encoding!r} is not rgb8/bgr8")
    row = msg.width * 3
    buf = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, :row]
    img = buf.reshape(msg.height, msg.width, 3)
    return img[..., ::-1].copy() if msg.encoding == "bgr8" else img.copy()


def _markers(msg) -> np.ndarray:
    names = [f.name for f in msg.fields]
    if names[:4] != ["x", "y", "dx", "dy"] or msg.point_step != 16:
        raise ValueError(f"tactile cloud fields {names} are not x, y, dx, dy float32")
    n = msg.width * msg.height
    return np.frombuffer(bytes(msg.data), "<f4", count=n * 4).reshape(n, 4).copy()


@dataclass
class Streams:
    """Decoded streams of one bag: name -> (stamps (n,), values (n, ...))."""
    arms: list
    cameras: list
    data: dict = field(default_factory=dict)
    task: str = ""
    custom: dict = field(default_factory=dict)
    start_stamp: float | None = None
    truncated: bool = False
    recorded_s: float | None = None     # the duration metadata.yaml gives, when it gives one


def read_streams(folder) -> Streams:
    """Decode the topics the dataset needs from one bag. ValueError naming the bag when it is
    unreadable or lacks a stream."""
    from mcap.exceptions import McapError
    from mcap.records import Channel, Footer, Message, Schema
    from mcap.stream_reader import StreamReader
    from mcap_ros2.decoder import DecoderFactory

    info = open_bag(folder)
    topics = info.topics
    arms = [t[1:-len("/tcp_pose")] for t in topics if t.endswith("/tcp_pose")]
    cameras = [t[1:-len("/color/image_raw")] for t in topics if t.endswith("/color/image_raw")]
    if not arms:
        raise ValueError(f"{info.folder}: no <arm>/tcp_pose topic in the bag")
    wanted = {}
    for a in arms:
        for kind in ("tcp_pose", "tcp_wrench", "tactile/markers", "target_tcp"):
            wanted[f"/{a}/{kind}"] = (a, kind)
    for c in cameras:
        wanted[f"/{c}/color/image_raw"] = (c, "image")
    wanted["/sim/episode"] = ("", "episode")
    raw: dict = {k: ([], []) for k in wanted.values()}
    factory = DecoderFactory()
    schemas, channels, decoders = {}, {}, {}
    out = Streams(arms, cameras, task=str(info.custom_data.get("task", "")), custom=dict(info.custom_data))
    order = None
    for rel in info.metadata.get("relative_file_paths", []):
        path = info.folder / rel
        if not path.is_file():
            raise ValueError(f"{path}: missing")
        saw_footer = False
        with open(path, "rb") as f:
            try:
                for rec in StreamReader(f, skip_magic=False, emit_chunks=False).records:
                    if isinstance(rec, Footer):
                        saw_footer = True
                    elif isinstance(rec, Schema):
                        schemas[rec.id] = rec
                    elif isinstance(rec, Channel):
                        channels[rec.id] = rec
                    elif isinstance(rec, Message):
                        ch = channels[rec.channel_id]
                        key = wanted.get(ch.topic)
                        if key is None:
                            continue
                        dec = decoders.get(ch.id)
                        if dec is None:
                            dec = decoders[ch.id] = factory.decoder_for(ch.message_encoding, schemas[ch.schema_id])
                        msg = dec(rec.data)
                        name, kind = key
                        if kind == "episode":
                            try:
                                ev = json.loads(msg.data)
                            except json.JSONDecodeError:
                                continue
                            if ev.get("event") == "start":
                                out.start_stamp = float(ev.get("start_stamp", 0.0))
                                order = list(ev.get("arms") or [])
                                out.task = out.task or str(ev.get("task", ""))
                            continue
                        if kind in ("tcp_pose", "target_tcp"):
                            p, q = msg.pose.position, msg.pose.orientation
                            v = np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w])
                        elif kind == "tcp_wrench":
                            fo, to = msg.wrench.force, msg.wrench.torque
                            v = np.array([fo.x, fo.y, fo.z, to.x, to.y, to.z])
                        elif kind == "tactile/markers":
                            v = _markers(msg)
                        else:
                            v = _image(msg)
                        raw[key][0].append(_stamp(msg))
                        raw[key][1].append(v)
            except (McapError, EOFError, KeyError, ValueError, Exception) as exc:  # noqa: BLE001
                if not channels:
                    raise ValueError(f"{path}: not a readable MCAP file ({type(exc).__name__}: {exc})") from None
                out.truncated = True
            if not saw_footer:   # cut at a record boundary: readable, but the end is missing
                out.truncated = True
    duration = (info.metadata.get("duration") or {}).get("nanoseconds")
    out.recorded_s = float(duration) * 1e-9 if isinstance(duration, (int, float)) and duration > 0 else None
    if order and sorted(order) == sorted(arms):
        out.arms = order
    else:
        out.arms = sorted(arms)
    for key, (t, v) in raw.items():
        if t:
            t = np.asarray(t, float)
            idx = np.argsort(t, kind="stable")
            t, v = t[idx], [v[i] for i in idx]
            keep = np.concatenate([t[1:] > t[:-1], [True]])        # a repeated stamp keeps its last sample
            out.data[key] = (t[keep], np.stack([x for x, k in zip(v, keep) if k]))
    return out


def age_bounds(streams: Streams, fps: float) -> dict:
    """How far a sample's stamp may be from the frame time it fills, per stream: half a frame
    for the nearest-sample streams (pose, wrench, tactile); for what is taken at or before
    the frame time (the command in force, a camera image), 1.5 of the stream's own median
    period (or half a frame, when that is longer)."""
    out = {}
    for key, (t, _) in streams.data.items():
        if key[1] in ("target_tcp", "image"):
            period = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
            out[key] = max(0.5 / fps, 1.5 * period)
        else:
            out[key] = 0.5 / fps
    return out


def resample(streams: Streams, fps: float, action: str = "target") -> tuple[dict, np.ndarray, dict, np.ndarray]:
    """-> (frames {feature: (T, ...)}, frame times (T,) in stamp seconds, lag {stream: max
    |sample stamp - frame time| s over the fresh frames; every frame's when none is fresh},
    fresh (T,) bool).

    A frame is fresh when every stream's sample is within that stream's bound of the frame
    time (:func:`age_bounds`); a gap in a stream (a sensor or a simulator that stalled)
    makes the frames it spans stale. :func:`fresh_runs` cuts the fresh ones into runs."""
    if action not in ACTIONS:
        raise ValueError(f"action: {action!r} not one of {', '.join(ACTIONS)}")
    need = [(a, k) for a in streams.arms for k in ("tcp_pose", "tcp_wrench", "tactile/markers")]
    if action == "target":
        need += [(a, "target_tcp") for a in streams.arms]
    need += [(c, "image") for c in streams.cameras]
    missing = [f"/{n}/{k}" for n, k in need if (n, k) not in streams.data]
    if missing:
        raise ValueError(f"no messages on {', '.join(missing)}")
    t0 = max(streams.data[k][0][0] for k in need)
    if streams.start_stamp is not None:
        t0 = max(t0, streams.start_stamp)
    t1 = min(streams.data[k][0][-1] for k in need if k[1] != "target_tcp")
    n = int(np.floor((t1 - t0) * fps + 1e-9)) + 1
    if n < 2:
        raise ValueError(f"streams overlap for {max(0.0, t1 - t0):.3f} s: fewer than 2 frames at {fps:g} fps")
    times = t0 + np.arange(n) / fps
    ages: dict = {}
    bounds = age_bounds(streams, fps)
    ok = np.ones(n, bool)

    def nearest(key):
        t, v = streams.data[key]
        i = np.clip(np.searchsorted(t, times), 1, len(t) - 1) if len(t) > 1 else np.zeros(n, int)
        if len(t) > 1:
            i = np.where(np.abs(t[i - 1] - times) <= np.abs(t[i] - times), i - 1, i)
        return take(key, i)

    def earlier(key):
        t, v = streams.data[key]
        i = np.clip(np.searchsorted(t, times + 1e-9, side="right") - 1, 0, len(t) - 1)
        return take(key, i)

    def take(key, i):
        t, v = streams.data[key]
        age = np.abs(times - t[i])
        ok[:] &= age <= bounds[key] + 1e-9
        ages[f"/{key[0]}/{key[1]}"] = age
        return v[i]

    arms = streams.arms
    # each arm's readings at the frame times, laid out as the policy's contract lays out a frame
    poses = {a: nearest((a, "tcp_pose")) for a in arms}
    wrenches = {a: nearest((a, "tcp_wrench")) for a in arms}
    states = {a: SimpleNamespace(tcp_pos=poses[a][:, :3], tcp_quat=poses[a][:, 3:], wrench=wrenches[a],
                                 tactile=nearest((a, "tactile/markers"))) for a in arms}
    frames = frame_features(states, arms, frames=n)
    pose = frames[POSE_KEY]
    if action == "target":
        frames[ACTION_KEY] = per_arm([earlier((a, "target_tcp")) for a in arms], frames=n)
    else:
        frames[ACTION_KEY] = np.concatenate([pose[1:], pose[-1:]], axis=0)
    for c in streams.cameras:
        frames[IMAGE_PREFIX + c] = earlier((c, "image"))
    lag = {k: float(a[ok].max()) if ok.any() else float(a.max()) for k, a in ages.items()}
    return frames, times, lag, ok


def command_speed(streams: Streams) -> float | None:
    """The fastest the commanded target moved between two consecutive commands, by their own
    stamps, from the episode's start (m/s; None without commands). A safety filter's output
    never exceeds its max_speed here; a lunge or an unfiltered command does."""
    peak = None
    for a in streams.arms:
        if (a, "target_tcp") not in streams.data:
            continue
        t, v = streams.data[(a, "target_tcp")]
        if streams.start_stamp is not None:
            keep = t >= streams.start_stamp
            t, v = t[keep], v[keep]
        if len(t) < 2:
            continue
        dt = np.diff(t)
        ok = dt > 1e-4
        if ok.any():
            sp = float((np.linalg.norm(np.diff(v[:, :3], axis=0), axis=1)[ok] / dt[ok]).max())
            peak = sp if peak is None else max(peak, sp)
    return peak


def fresh_runs(fresh: np.ndarray, min_frames: int = 2) -> list[slice]:
    """The runs of consecutive fresh frames at least ``min_frames`` long: each becomes an
    episode of its own, so the time between frames stays 1/fps within every episode."""
    out, start = [], None
    for i, m in enumerate(np.append(fresh, False)):
        if m and start is None:
            start = i
        elif not m and start is not None:
            if i - start >= min_frames:
                out.append(slice(start, i))
            start = None
    return out


def _bar(i: int, n: int, name: str, width: int = 30) -> str:
    done = int(width * i / max(n, 1))
    return f"\r[{'#' * done}{'-' * (width - done)}] {i}/{n} {name[:40]:40s}"


def convert_bags(bags, out, fps: float = 50.0, action: str = "target", only_success: bool = False,
                 overwrite: bool = False, progress="stderr", drop_stale: bool = False,
                 min_run_s: float = 0.5) -> dict:
    """Convert ``bags`` (episode folders) into one dataset at ``out``. A bag that cannot be
    converted is reported (its name and why) and skipped; the others still convert.

    A frame where some stream's sample is older than its bound (:func:`age_bounds`) is stale.
    Stale frames are marked (per-frame feature ``stale``, 1.0) and counted; with
    ``drop_stale`` they are dropped instead and the fresh runs around them (at least
    ``min_run_s`` long) become episodes of their own.
    Returns {"dataset": path or None, "episodes": [per bag: frames kept, dropped_frames,
    parts, ...], "errors": {bag: reason}, "not_success": [bags left out by ``only_success``],
    "max_lag_s": the largest offset kept}."""
    from slowfast_data.writer import DatasetWriter, check_output_folder

    if progress == "stderr":
        progress = sys.stderr
    if not fps > 0:
        raise ValueError(f"fps: {fps} must be > 0")
    if action not in ACTIONS:
        raise ValueError(f"action: {action!r} not one of {', '.join(ACTIONS)}")
    bags = [Path(b) for b in bags]
    if not bags:
        raise ValueError("no bags given")
    check_output_folder(out, overwrite)   # before reading any bag: a bad --out is not a bag's fault
    min_frames = max(2, int(np.ceil(min_run_s * fps)))
    writer, done, errors, not_success, max_lag = None, [], {}, [], 0.0
    for i, b in enumerate(bags):
        if progress is not None:
            progress.write(_bar(i, len(bags), b.name))
            progress.flush()
        try:
            s = read_streams(b)
            if only_success and s.custom.get("success") != "True":
                not_success.append(str(b))
                continue
            frames, times, lag, fresh = resample(s, fps, action)
            frames["stale"] = (~fresh).astype(np.float32)[:, None]
            runs = fresh_runs(fresh, min_frames) if drop_stale else [slice(0, len(times))]
            if not runs:
                raise ValueError(f"no {min_frames} consecutive frames at {fps:g} fps with every stream within "
                                 f"its age bound ({int((~fresh).sum())} of {len(fresh)} frames stale)")
            if writer is None:
                cams = {c: frames[f"observation.images.{c}"].shape[1:3] for c in s.cameras}
                n_markers = frames["observation.tactile"].shape[1] // (4 * len(s.arms))
                writer = DatasetWriter(out, fps=fps, arms=s.arms, cameras=cams, tactile_markers=n_markers,
                                       robot_type="slowfast", overwrite=overwrite, extra_features={"stale": [1]})
                layout = (s.arms, s.cameras, frames["observation.tactile"].shape[1])
            elif (s.arms, s.cameras, frames["observation.tactile"].shape[1]) != layout:
                raise ValueError(f"arms/cameras/markers {s.arms}, {s.cameras} differ from the first episode's")
            for r in runs:
                part = {k: v[r] for k, v in frames.items()}
                part["timestamp"] = times[r] - times[r][0]
                writer.add_episode(part, task=s.task)
            kept = sum(r.stop - r.start for r in runs)
            cmd_speed = command_speed(s)
            done.append({"bag": str(b), "frames": kept, "seconds": kept / fps, "parts": len(runs),
                         "recorded_s": s.recorded_s, "truncated": s.truncated, "lag_s": lag,
                         "stale_frames": int((~fresh).sum()), "dropped_frames": len(times) - kept,
                         "peak_command_speed_mps": cmd_speed})
            max_lag = max([max_lag, *lag.values()])
        except (ValueError, OSError) as exc:
            msg = str(exc)
            errors[str(b)] = msg if str(b) in msg else f"{b}: {msg}"
    if progress is not None:
        progress.write(_bar(len(bags), len(bags), "done") + "\n")
    root = writer.finalize() if writer is not None else None
    if root is not None:
        from .check import CONVERSION_FILE   # what was dropped and kept, for `slowfast dataset check`
        (Path(root) / "meta" / CONVERSION_FILE).write_text(json.dumps(
            {"fps": fps, "action": action, "bags": done, "skipped": errors, "not_success": not_success}, indent=1))
    return {"dataset": str(root) if root else None, "episodes": done, "errors": errors,
            "not_success": not_success, "max_lag_s": max_lag}
