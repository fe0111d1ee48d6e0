"""rosbag2/MCAP episodes without DDS: schemas, metadata, the recorder's states, a full disk."""
import errno

import pytest
import yaml

from teleop_tactar import bag as B
from teleop_tactar.recorder import EpisodeRecorder


def test_msgdef_concatenates_dependencies_once():
    d = B.msgdef("geometry_msgs/msg/PoseStamped")
    assert d.startswith("# A Pose with reference") or "Pose pose" in d.split("=" * 80)[0]
    names = [ln[5:] for ln in d.splitlines() if ln.startswith("MSG: ")]
    assert names == ["std_msgs/Header", "builtin_interfaces/Time", "geometry_msgs/Pose", "geometry_msgs/Point",
                     "geometry_msgs/Quaternion"]
    with pytest.raises(ValueError, match="no message definition"):
        B.msgdef("nope_msgs/msg/Nothing")


def test_recorder_start_stop_discard_and_metadata(tmp_path):
    rec = EpisodeRecorder(tmp_path, min_free_mb=0.0)
    rec.add_topic("/x", "std_msgs/msg/String")
    rec.write("/x", b"\x00\x01\x00\x00\x02\x00\x00\x00a\x00", 5)          # not recording: ignored
    folder = rec.start(task="wipe")
    for i in range(10):
        rec.write("/x", b"\x00\x01\x00\x00\x02\x00\x00\x00a\x00", 100 + i)
    assert "recording" in rec.progress()["line"] and "/x=10" in rec.progress()["line"]
    assert rec.stop(success=True) == folder
    meta = yaml.safe_load((folder / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["message_count"] == 10 and meta["custom_data"]["success"] == "True"
    assert meta["custom_data"]["task"] == "wipe" and meta["storage_identifier"] == "mcap"
    assert len(list(B.iter_bag(folder))) == 10
    f2 = rec.start()
    assert f2.name == "episode_0001"
    rec.discard()
    assert not f2.exists()


def test_full_disk_stops_the_episode_and_keeps_what_was_written(tmp_path, monkeypatch):
    rec = EpisodeRecorder(tmp_path, min_free_mb=0.0, flush_period=0.01)
    rec.add_topic("/x", "std_msgs/msg/String")
    folder = rec.start()
    data = b"\x00\x01\x00\x00\x02\x00\x00\x00a\x00"
    for i in range(5):
        rec.write("/x", data, 100 + i)
    rec.flush()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(rec.bag._w, "flush", full)
    import time
    time.sleep(0.02)
    rec.write("/x", data, 200)
    assert not rec.recording and "disk full" in rec.error and folder.name in rec.error
    info = B.open_bag(folder)
    assert len(list(B.iter_bag(folder, info=info))) == 5 and info.truncated
    # and refusing to start when the disk is (nearly) full
    rec2 = EpisodeRecorder(tmp_path / "b", min_free_mb=1e12)
    with pytest.raises(OSError, match="disk full"):
        rec2.start()


def test_unreadable_bags_raise_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match="no metadata.yaml"):
        B.open_bag(tmp_path)
    rec = EpisodeRecorder(tmp_path / "r", min_free_mb=0.0)
    rec.add_topic("/x", "std_msgs/msg/String")
    folder = rec.start()
    rec.stop()
    mcap = folder / f"{folder.name}_0.mcap"
    mcap.write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match=str(mcap.name)):
        list(B.iter_bag(folder))


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
def test_compressed_chunks_read_back_with_every_reader(tmp_path, compression):
    """MCAP chunk compression: the recorder's own reader, the mcap library's indexed reader
    and a flushed-but-unfinished bag (a killed recorder) all read every message back."""
    from mcap.reader import make_reader

    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    def image(i):
        return serialize_message(Image(height=48, width=64, encoding="rgb8", step=192,
                                       data=bytes([i % 251]) * (48 * 192)))

    rec = EpisodeRecorder(tmp_path / compression, min_free_mb=0.0, compression=compression)
    rec.add_topic("/camera/color/image_raw", "sensor_msgs/msg/Image")
    folder = rec.start(task="wipe")
    for i in range(60):
        rec.write("/camera/color/image_raw", image(i), 1_000 + i)
    rec.stop(success=True)
    assert len(list(B.iter_bag(folder))) == 60
    with open(next(folder.glob("*.mcap")), "rb") as f:
        assert sum(1 for _ in make_reader(f).iter_messages()) == 60
    size = sum(p.stat().st_size for p in folder.glob("*.mcap"))
    raw = 60 * 48 * 192
    assert (size < raw / 10) if compression != "none" else (size > raw)
    # a killed recorder: flushed chunks, no summary
    w = B.BagWriter(tmp_path / f"{compression}_killed", chunk_size=4096, compression=compression)
    w.add_topic("/camera/color/image_raw", "sensor_msgs/msg/Image")
    for i in range(20):
        w.write("/camera/color/image_raw", image(i), 1_000 + i)
    w.flush()
    w._f.close()                                    # no finish(): what SIGKILL leaves
    info = B.open_bag(w.folder)
    assert len(list(B.iter_bag(w.folder, info=info))) == 20 and info.truncated


def test_an_unknown_compression_is_refused(tmp_path):
    with pytest.raises(ValueError, match="compression"):
        EpisodeRecorder(tmp_path, compression="gzip")
