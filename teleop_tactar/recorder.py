"""Episode recording: start, stop (success / failure), discard, progress, full-disk
handling, around :class:`~teleop_tactar.bag.BagWriter`. No ROS: the recorder node feeds
raw CDR messages from its subscriptions through a bounded queue into :meth:`write`.
"""
from __future__ import annotations

import dataclasses
import errno
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from slowfast_data.fields import described

from .bag import BagWriter, repair_bag


COMPRESSIONS = ("zstd", "lz4", "none")   # MCAP chunk compression of the bags


@dataclass
class RecorderConfig:
    """How episodes are written: the one definition of each value (default, meaning, range).
    recorder_node declares them as ``bag.<name>`` parameters."""

    prefix: str = described("episode", "episode folder name prefix (<prefix>_NNNN)")
    chunk_size: int = described(1 << 20, "MCAP chunk size (bytes)", 1 << 12, 1 << 28)
    compression: str = described("zstd", "MCAP chunk compression: " + " | ".join(COMPRESSIONS))
    flush_period: float = described(0.5, "flush the bag at least this often (s): the most a crash loses",
                                    0.01, 10.0)
    min_free_mb: float = described(200.0, "stop recording when less disk than this is free (MB)")

    def __post_init__(self):
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression: {self.compression!r} not one of {', '.join(COMPRESSIONS)}")
        if not 0.01 <= self.flush_period <= 10.0:
            raise ValueError(f"flush_period: {self.flush_period} outside 0.01..10 s")
        if not (1 << 12) <= self.chunk_size <= (1 << 28):
            raise ValueError(f"chunk_size: {self.chunk_size} outside 4 KiB..256 MiB")


class EpisodeRecorder:
    def __init__(self, out_dir: str | Path, config: RecorderConfig | None = None, fsync: bool = False, **changes):
        """Episodes under ``out_dir`` written as ``config`` says, with ``changes`` (RecorderConfig
        field names: ``min_free_mb=0.0``) on top."""
        cfg = self.config = dataclasses.replace(config or RecorderConfig(), **changes)
        prefix, chunk_size, flush_period, min_free_mb, compression = (
            cfg.prefix, cfg.chunk_size, cfg.flush_period, cfg.min_free_mb, cfg.compression)
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.chunk_size, self.flush_period, self.min_free_mb, self.fsync = chunk_size, flush_period, min_free_mb, fsync
        self.compression = compression
        self.bag: BagWriter | None = None
        self.types: dict[str, str] = {}            # every topic seen: name -> type
        self.qos: dict[str, list] = {}             # name -> the QoS its publishers offer
        self.latched: dict[str, bytes | None] = {}  # latched topic -> its last message
        self.counts: Counter = Counter()
        self.drops: Counter = Counter()
        self.started = 0.0
        self.last_flush = 0.0
        self.episodes_done: list[Path] = []
        self.error = ""
        self.meta: dict = {}

    def repair_unfinished(self) -> list[str]:
        """Repair every bag under ``out_dir`` a killed recorder left without its summary
        (see :func:`~teleop_tactar.bag.repair_bag`); one line per bag, saying what was kept
        or why it could not be repaired (that bag is left as it was)."""
        lines = []
        for folder in sorted(p for p in self.out_dir.iterdir() if (p / "metadata.yaml").is_file()):
            try:
                done = repair_bag(folder, self.compression)   # None: the bag was complete
            except (ValueError, OSError) as exc:
                lines.append(f"{folder.name}: cut short and not repairable ({exc})")
                continue
            if done:
                lines.append(f"{folder.name}: was cut short; repaired, {done['messages']} messages "
                             f"({done['seconds']:.1f} s) kept")
        return lines

    @property
    def recording(self) -> bool:
        return self.bag is not None

    def _next_folder(self) -> Path:
        used = {p.name for p in self.out_dir.iterdir()}
        i = 0
        while f"{self.prefix}_{i:04d}" in used:
            i += 1
        return self.out_dir / f"{self.prefix}_{i:04d}"

    def start(self, **custom) -> Path:
        if self.bag is not None:
            return self.bag.folder
        free = shutil.disk_usage(self.out_dir).free / 1e6
        if free < self.min_free_mb:
            self.error = f"disk full: {free:.0f} MB free under {self.out_dir} (< {self.min_free_mb:g} MB); not recording"
            raise OSError(errno.ENOSPC, self.error)
        self.meta = {k: v for k, v in custom.items() if v is not None}
        self.bag = BagWriter(self._next_folder(), self.chunk_size, self.meta, fsync=self.fsync,
                             compression=self.compression)
        for name, t in self.types.items():
            self.bag.add_topic(name, t, self.qos.get(name))
        self.counts.clear()
        self.drops.clear()
        self.error = ""
        self.started = self.last_flush = time.monotonic()
        return self.bag.folder

    def write_latched(self, log_time_ns: int) -> None:
        """Write the last message of each latched topic (an e-stop, a mode): the state a
        subscriber joining at the episode start gets, which the bag would otherwise lack."""
        for name, data in list(self.latched.items()):
            if data is not None:
                self.write(name, data, log_time_ns)

    def add_topic(self, name: str, type_name: str, offered_qos: list[dict] | None = None,
                  keep_latched: bool = True) -> None:
        """A topic to record; ``offered_qos``: its publishers' QoS (see BagWriter.add_topic).
        A topic every publisher offers transient local keeps its last message for
        :meth:`write_latched`, unless ``keep_latched`` is False (events of one episode)."""
        self.types[name] = type_name
        self.qos[name] = list(offered_qos or [])
        if keep_latched and self.qos[name] and all(o.get("durability") == "transient_local" for o in self.qos[name]):
            self.latched.setdefault(name, None)
        if self.bag is not None:
            self.bag.add_topic(name, type_name, self.qos[name])

    def write(self, topic: str, data: bytes, log_time_ns: int) -> None:
        if topic in self.latched:
            self.latched[topic] = data
        if self.bag is None:
            return
        try:
            self.bag.write(topic, data, log_time_ns)
            self.counts[topic] += 1
            if time.monotonic() - self.last_flush >= self.flush_period:
                self.flush()
        except OSError as exc:
            self._fail(exc)

    def flush(self) -> None:
        if self.bag is None:
            return
        try:
            self.bag.flush()
            self.last_flush = time.monotonic()
            if shutil.disk_usage(self.out_dir).free / 1e6 < self.min_free_mb:
                raise OSError(errno.ENOSPC, "free space below min_free_mb")
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        bag, self.bag = self.bag, None
        n = sum(self.counts.values())
        why = "disk full" if exc.errno == errno.ENOSPC else f"write error ({exc.strerror or exc})"
        self.error = f"{why}: episode {bag.folder.name} stopped; kept what was flushed ({n} messages received)"
        bag.abort()
        self.episodes_done.append(bag.folder)

    def stop(self, success: bool | None = None) -> Path | None:
        if self.bag is None:
            return None
        bag, self.bag = self.bag, None
        extra = {"duration_s": round(time.monotonic() - self.started, 3)}
        if success is not None:
            extra["success"] = bool(success)
        try:
            bag.close(extra)
        except OSError as exc:
            self.bag = bag
            self._fail(exc)
            return bag.folder
        self.episodes_done.append(bag.folder)
        return bag.folder

    def discard(self) -> Path | None:
        if self.bag is None:
            return None
        bag, self.bag = self.bag, None
        try:
            bag.close()
        except OSError:
            bag.abort()
        shutil.rmtree(bag.folder, ignore_errors=True)
        return bag.folder

    def progress(self) -> dict:
        bag = self.bag
        state = "recording" if bag is not None else ("error" if self.error else "idle")
        elapsed = time.monotonic() - self.started if bag is not None else 0.0
        counts, drops = dict(self.counts), sum(self.drops.values())
        name = bag.folder.name if bag is not None else ""
        per = " ".join(f"{t}={n}" for t, n in sorted(counts.items()))
        line = (f"{state} {name} {elapsed:6.1f}s | {per} | drops={drops}" if bag is not None
                else (self.error or f"{state} ({len(self.episodes_done)} episodes)"))
        return {"state": state, "episode": name, "elapsed": round(elapsed, 2), "counts": counts,
                "drops": dict(self.drops), "line": line, "error": self.error}
