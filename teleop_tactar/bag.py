"""rosbag2 episodes in MCAP, written with the ``mcap`` package (rosbag2 itself is not needed).

An episode is a folder: ``metadata.yaml`` (rosbag2 format, storage_identifier ``mcap``) and
one ``<name>_0.mcap`` (profile ``ros2``; schemas ``ros2msg`` with the full concatenated
message definitions; channels ``cdr``), so ``ros2 bag info/play``, Foxglove and the ``mcap``
CLI open it. Messages arrive already CDR-serialized (the recorder subscribes raw).

Crash safety: :meth:`BagWriter.flush` ends the chunk in progress and flushes the file and
``metadata.yaml`` (rewritten atomically); a recorder killed between flushes leaves a bag
whose MCAP has no summary, and :func:`read_bag` reads it linearly up to the last complete
chunk. No ROS imports: message definitions come from the ``.msg`` files of the installed
message packages (``share/<pkg>/msg``).
"""
from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
              "int32", "uint32", "int64", "uint64", "string", "wstring"}
SEPARATOR = "=" * 80


def share_dirs() -> list[Path]:
    dirs = [Path(p) / "share" for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    dirs.append(Path(sys.prefix) / "share")
    return [d for d in dirs if d.is_dir()]


def _msg_text(pkg: str, name: str, dirs) -> str:
    for d in dirs:
        f = d / pkg / "msg" / f"{name}.msg"
        if f.is_file():
            return f.read_text()
    raise ValueError(f"no message definition {pkg}/msg/{name}.msg under {[str(d) for d in dirs]}")


def _deps(text: str, pkg: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        ftype = line.split()[0]
        rest = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
        if re.match(r"^[A-Za-z0-9_]+\s*=", rest):
            continue  # a constant
        base = re.sub(r"\[.*\]$", "", ftype)
        base = re.sub(r"<=\d+$", "", base)
        if base in PRIMITIVES:
            continue
        if base == "Header":
            out.append(("std_msgs", "Header"))
        elif "/" in base:
            parts = base.split("/")
            out.append((parts[0], parts[-1]))
        else:
            out.append((pkg, base))
    return out


def msgdef(type_name: str, dirs=None) -> str:
    """The ros2msg schema of ``pkg/msg/Type``: its .msg text, then every dependency
    (depth first, once each) after a line of '=' and ``MSG: pkg/Type``."""
    dirs = share_dirs() if dirs is None else dirs
    parts = type_name.split("/")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[1] != "msg"):
        raise ValueError(f"message type {type_name!r}: expected pkg/msg/Type")
    pkg, name = parts[0], parts[-1]
    main = _msg_text(pkg, name, dirs)
    parts, seen = [main.rstrip("\n")], set()

    def visit(p: str, n: str, text: str):
        for dp, dn in _deps(text, p):
            if (dp, dn) in seen:
                continue
            seen.add((dp, dn))
            t = _msg_text(dp, dn, dirs)
            parts.append(f"{SEPARATOR}\nMSG: {dp}/{dn}\n{t.rstrip(chr(10))}")
            visit(dp, dn, t)

    visit(pkg, name, main)
    return "\n".join(parts) + "\n"


#: the QoS fields rosbag2 records per offering publisher, in its metadata version 9 spelling
QOS_KEYS = ("history", "depth", "reliability", "durability", "deadline", "lifespan", "liveliness",
            "liveliness_lease_duration", "avoid_ros_namespace_conventions")


def qos_yaml(profiles: list[dict]) -> str:
    """The offered QoS profiles as the MCAP channel's ``offered_qos_profiles`` string (a YAML
    list, what rosbag2's MCAP storage writes; empty when unknown)."""
    return yaml.safe_dump([{k: p[k] for k in QOS_KEYS} for p in profiles], sort_keys=False).strip() if profiles else ""


@dataclass
class _Topic:
    name: str
    type: str
    channel_id: int
    count: int = 0
    qos: list = field(default_factory=list)


class BagWriter:
    """One rosbag2 episode folder. ``add_topic`` then ``write`` raw CDR bytes; ``flush``
    every so often; ``close`` writes the MCAP summary and the final metadata."""

    def __init__(self, folder: str | os.PathLike, chunk_size: int = 1 << 20, custom_data: dict | None = None,
                 msgdef_dirs=None, fsync: bool = False, compression: str = "zstd"):
        from mcap.writer import CompressionType, Writer

        kinds = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
        if compression not in kinds:
            raise ValueError(f"compression: {compression!r} not one of {', '.join(kinds)}")
        self.folder = Path(folder)
        if self.folder.exists() and any(self.folder.iterdir()):
            raise OSError(f"bag folder {self.folder} exists and is not empty")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file_name = f"{self.folder.name}_0.mcap"
        self._f = open(self.folder / self.file_name, "wb")  # noqa: SIM115 - closed in close()
        # MCAP chunk compression (what rosbag2's mcap storage does with its zstd presets): every
        # reader decompresses it; metadata.yaml's compression fields stay empty, as they name
        # rosbag2's own file/message compression, which is not used.
        self.compression = compression
        self._w = Writer(self._f, chunk_size=chunk_size, compression=kinds[compression])
        self._w.start(profile="ros2", library="slowfast teleop_tactar.bag")
        self.topics: dict[str, _Topic] = {}
        self._schemas: dict[str, int] = {}
        self._dirs = msgdef_dirs
        self.custom_data = dict(custom_data or {})
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.bytes = 0
        self.fsync = fsync
        self.closed = False
        self._write_metadata()

    def add_topic(self, name: str, type_name: str, offered_qos: list[dict] | None = None) -> None:
        """A channel for ``name``. ``offered_qos``: the QoS its publishers offer (dicts with
        :data:`QOS_KEYS`, rosbag2's v9 spelling), recorded so a replay serves a latched topic
        latched."""
        if name in self.topics:
            return
        if type_name not in self._schemas:
            self._schemas[type_name] = self._w.register_schema(
                name=type_name, encoding="ros2msg", data=msgdef(type_name, self._dirs).encode())
        qos = [dict(p) for p in (offered_qos or [])]
        cid = self._w.register_channel(topic=name, message_encoding="cdr", schema_id=self._schemas[type_name],
                                       metadata={"offered_qos_profiles": qos_yaml(qos)})
        self.topics[name] = _Topic(name, type_name, cid, qos=qos)

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> None:
        t = self.topics[topic]
        self._w.add_message(channel_id=t.channel_id, log_time=log_time_ns,
                            publish_time=publish_time_ns if publish_time_ns is not None else log_time_ns,
                            data=data, sequence=t.count)
        t.count += 1
        self.bytes += len(data)
        if self.first_ns is None or log_time_ns < self.first_ns:
            self.first_ns = log_time_ns
        if self.last_ns is None or log_time_ns > self.last_ns:
            self.last_ns = log_time_ns

    def flush(self) -> None:
        """End the chunk in progress and push everything to the file (and metadata.yaml)."""
        self._w.flush()
        if self.fsync:
            os.fsync(self._f.fileno())
        self._write_metadata()

    def close(self, custom_data: dict | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        if custom_data:
            self.custom_data.update(custom_data)
        try:
            self._w.add_metadata("slowfast", {k: str(v) for k, v in self.custom_data.items()})
            self._w.finish()
        finally:
            self._f.close()
            self._write_metadata()

    def abort(self) -> None:
        """Close after a write error (a full disk): keep what reached the file."""
        self.closed = True
        try:
            self._f.close()
        except OSError:
            pass
        try:
            self._write_metadata()
        except OSError:
            pass

    @property
    def message_count(self) -> int:
        return sum(t.count for t in self.topics.values())

    def _write_metadata(self) -> None:
        start = self.first_ns or time.time_ns()
        dur = (self.last_ns - self.first_ns) if self.first_ns is not None else 0
        topics = [{"topic_metadata": {"name": t.name, "type": t.type, "serialization_format": "cdr",
                                      "offered_qos_profiles": [{k: p[k] for k in QOS_KEYS} for p in t.qos],
                                      "type_description_hash": ""},
                   "message_count": t.count} for t in self.topics.values()]
        info = {"rosbag2_bagfile_information": {
            "version": 9, "storage_identifier": "mcap",
            "duration": {"nanoseconds": int(dur)},
            "starting_time": {"nanoseconds_since_epoch": int(start)},
            "message_count": self.message_count,
            "topics_with_message_count": topics,
            "compression_format": "", "compression_mode": "",
            "relative_file_paths": [self.file_name],
            "files": [{"path": self.file_name, "starting_time": {"nanoseconds_since_epoch": int(start)},
                       "duration": {"nanoseconds": int(dur)}, "message_count": self.message_count}],
            "custom_data": {k: str(v) for k, v in self.custom_data.items()},
            "ros_distro": os.environ.get("ROS_DISTRO", "kilted"),
        }}
        tmp = self.folder / ".metadata.yaml.tmp"
        tmp.write_text(yaml.safe_dump(info, sort_keys=False))
        os.replace(tmp, self.folder / "metadata.yaml")


@dataclass
class BagContents:
    folder: Path
    metadata: dict
    custom_data: dict
    topics: dict = field(default_factory=dict)       # name -> type
    truncated: bool = False                          # the MCAP ended without its summary


def open_bag(folder: str | os.PathLike) -> BagContents:
    """Check a bag folder and read its metadata; ValueError naming the folder otherwise."""
    folder = Path(folder)
    meta_path = folder / "metadata.yaml"
    if not meta_path.is_file():
        raise ValueError(f"{folder}: not a rosbag2 folder (no metadata.yaml)")
    try:
        meta = yaml.safe_load(meta_path.read_text())["rosbag2_bagfile_information"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise ValueError(f"{meta_path}: unreadable metadata ({exc})") from None
    if meta.get("storage_identifier") != "mcap":
        raise ValueError(f"{folder}: storage {meta.get('storage_identifier')!r} is not mcap")
    topics = {t["topic_metadata"]["name"]: t["topic_metadata"]["type"] for t in meta.get("topics_with_message_count", [])}
    return BagContents(folder, meta, dict(meta.get("custom_data") or {}), topics)


def iter_bag(folder: str | os.PathLike, topics=None, info: BagContents | None = None):
    """Yield (topic, log_time_ns, raw CDR bytes, type name) of every message, in file order.
    A bag cut short (killed recorder) yields everything up to its last complete chunk and
    sets ``info.truncated``. Raises ValueError naming the file when nothing is readable."""
    from mcap.exceptions import McapError
    from mcap.stream_reader import StreamReader
    from mcap.records import Channel, Message, Schema, Footer

    info = info or open_bag(folder)
    files = [info.folder / p for p in info.metadata.get("relative_file_paths", [])]
    if not files:
        raise ValueError(f"{info.folder}: metadata lists no files")
    wanted = set(topics) if topics is not None else None
    for path in files:
        if not path.is_file():
            raise ValueError(f"{path}: missing")
        channels, schemas = {}, {}
        saw_footer = False
        with open(path, "rb") as f:
            try:
                for rec in StreamReader(f, skip_magic=False, emit_chunks=False).records:
                    if isinstance(rec, Schema):
                        schemas[rec.id] = rec.name
                    elif isinstance(rec, Channel):
                        channels[rec.id] = (rec.topic, schemas.get(rec.schema_id, ""))
                    elif isinstance(rec, Message):
                        topic, tname = channels[rec.channel_id]
                        if wanted is None or topic in wanted:
                            yield topic, rec.log_time, rec.data, tname
                    elif isinstance(rec, Footer):
                        saw_footer = True
            except (McapError, EOFError, ValueError, KeyError, Exception) as exc:  # noqa: BLE001
                if not channels:
                    raise ValueError(f"{path}: not a readable MCAP file ({type(exc).__name__}: {exc})") from None
                info.truncated = True
        if not saw_footer:
            info.truncated = True


MCAP_MAGIC = b"\x89MCAP0\r\n"


def is_complete(path: str | os.PathLike) -> bool:
    """Whether an MCAP file ends with its footer and magic (a writer that finished); a file
    cut short by a killed recorder does not, and indexed readers refuse it."""
    path = Path(path)
    size = path.stat().st_size
    if size < 2 * len(MCAP_MAGIC):
        return False
    with open(path, "rb") as f:
        f.seek(-len(MCAP_MAGIC), os.SEEK_END)
        return f.read() == MCAP_MAGIC


def repair_bag(folder: str | os.PathLike, compression: str = "zstd") -> dict | None:
    """Rewrite a bag whose MCAP was cut short (a killed recorder) with everything readable up
    to its last complete chunk, plus the summary and index an indexed reader needs, and
    metadata.yaml counted from what was kept. Returns what was done, or None when the bag
    was complete. The original is replaced only once the rewrite reads back in full (a
    rewrite that fails leaves it as it was); ValueError for a folder that is not a bag."""
    from mcap.exceptions import McapError
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader
    from mcap.writer import CompressionType, Writer

    info = open_bag(folder)
    files = [info.folder / p for p in info.metadata.get("relative_file_paths", [])]
    if len(files) != 1 or not files[0].is_file():
        raise ValueError(f"{info.folder}: expected one MCAP file, metadata lists {files}")
    path = files[0]
    if is_complete(path):
        return None
    kinds = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
    tmp = path.with_name(path.name + ".repair")
    counts: dict[int, int] = {}
    channels: dict[int, tuple] = {}
    schema_names: dict[int, str] = {}
    first = last = None
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        w = Writer(dst, compression=kinds[compression])
        w.start(profile="ros2", library="slowfast teleop_tactar.bag (repaired)")
        schema_ids: dict[int, int] = {}
        chan_ids: dict[int, int] = {}
        try:
            for rec in StreamReader(src, skip_magic=False, emit_chunks=False).records:
                if isinstance(rec, Schema) and rec.id not in schema_ids:
                    schema_ids[rec.id] = w.register_schema(rec.name, rec.encoding, rec.data)
                    schema_names[rec.id] = rec.name
                elif isinstance(rec, Channel) and rec.id not in chan_ids:
                    chan_ids[rec.id] = w.register_channel(rec.topic, rec.message_encoding,
                                                          schema_ids.get(rec.schema_id, 0), dict(rec.metadata))
                    channels[rec.id] = (rec.topic, schema_names.get(rec.schema_id, ""), dict(rec.metadata))
                elif isinstance(rec, Message) and rec.channel_id in chan_ids:
                    w.add_message(chan_ids[rec.channel_id], rec.log_time, rec.data, rec.publish_time, rec.sequence)
                    counts[rec.channel_id] = counts.get(rec.channel_id, 0) + 1
                    first = rec.log_time if first is None else min(first, rec.log_time)
                    last = rec.log_time if last is None else max(last, rec.log_time)
        except (McapError, EOFError, ValueError, KeyError, Exception) as exc:  # noqa: BLE001 - the cut
            cut = exc
        else:
            cut = None
        if not channels:
            dst.close()
            tmp.unlink(missing_ok=True)
            raise ValueError(f"{path}: not a readable MCAP file ({type(cut).__name__}: {cut}); left as it is")
        custom = dict(info.custom_data, repaired="true")
        w.add_metadata("slowfast", {k: str(v) for k, v in custom.items()})
        w.finish()
        dst.flush()
        os.fsync(dst.fileno())
    kept = sum(counts.values())
    try:
        _check_indexed(tmp, kept)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    topics = [{"topic_metadata": {"name": t, "type": ty, "serialization_format": "cdr",
                                  "offered_qos_profiles": yaml.safe_load(md.get("offered_qos_profiles") or "[]") or [],
                                  "type_description_hash": ""},
               "message_count": counts.get(cid, 0)} for cid, (t, ty, md) in channels.items()]
    meta = dict(info.metadata)
    start, dur = int(first or 0), int((last - first) if first is not None else 0)
    meta.update({"message_count": kept, "topics_with_message_count": topics,
                 "duration": {"nanoseconds": dur}, "starting_time": {"nanoseconds_since_epoch": start},
                 "files": [{"path": path.name, "starting_time": {"nanoseconds_since_epoch": start},
                            "duration": {"nanoseconds": dur}, "message_count": kept}],
                 "custom_data": {k: str(v) for k, v in custom.items()}})
    tmp_meta = info.folder / ".metadata.yaml.tmp"
    tmp_meta.write_text(yaml.safe_dump({"rosbag2_bagfile_information": meta}, sort_keys=False))
    os.replace(tmp_meta, info.folder / "metadata.yaml")
    return {"bag": str(info.folder), "messages": kept, "seconds": dur * 1e-9,
            "listed_before": int(info.metadata.get("message_count") or 0)}


def _check_indexed(path: Path, expected: int) -> None:
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        n = sum(1 for _ in make_reader(f).iter_messages())
    if n != expected:
        raise ValueError(f"{path}: the rewrite reads back {n} messages, {expected} were kept")
