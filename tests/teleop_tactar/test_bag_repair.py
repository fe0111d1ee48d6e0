"""Bags as independent readers see them: a recorder killed with SIGKILL, `slowfast bag repair`,
the recorder repairing at restart, and the offered QoS rosbags reads back."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import yaml

from teleop_tactar import bag as B
from teleop_tactar.recorder import EpisodeRecorder

LATCHED = {"history": "unknown", "depth": 0, "reliability": "reliable", "durability": "transient_local",
           "deadline": {"sec": 9223372036, "nsec": 854775807}, "lifespan": {"sec": 9223372036, "nsec": 854775807},
           "liveliness": "automatic", "liveliness_lease_duration": {"sec": 9223372036, "nsec": 854775807},
           "avoid_ros_namespace_conventions": False}
SENSOR = dict(LATCHED, durability="volatile")

KILLED = textwrap.dedent("""
    import os, signal, sys
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String
    from geometry_msgs.msg import WrenchStamped
    from teleop_tactar.recorder import EpisodeRecorder
    LATCHED, SENSOR = {latched!r}, {sensor!r}
    rec = EpisodeRecorder(sys.argv[1], min_free_mb=0.0, flush_period=10.0, chunk_size=4096)
    rec.add_topic("/safety/estop", "std_msgs/msg/String", [LATCHED])
    rec.add_topic("/arm/tcp_wrench", "geometry_msgs/msg/WrenchStamped", [SENSOR])
    rec.write("/safety/estop", serialize_message(String(data="released")), 1)   # before the episode
    rec.start(task="wipe")
    rec.write_latched(1_000)
    for i in range(300):
        m = WrenchStamped()
        m.wrench.force.z = float(i)
        rec.write("/arm/tcp_wrench", serialize_message(m), 1_000 + i * 1_000_000)
        if i == 199:
            rec.flush()
    os.kill(os.getpid(), signal.SIGKILL)    # 100 messages after the last flush are lost
""").format(latched=LATCHED, sensor=SENSOR)


@pytest.fixture
def killed_bag(tmp_path):
    out = tmp_path / "rec"
    r = subprocess.run([sys.executable, "-c", KILLED, str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == -signal.SIGKILL, r.stderr
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


def _indexed_count(folder):
    from mcap.reader import make_reader

    with open(next(folder.glob("*.mcap")), "rb") as f:
        return sum(1 for _ in make_reader(f).iter_messages())


def test_a_killed_recorders_bag_is_repaired_for_indexed_readers(killed_bag, capsys):
    from slowfast_app.cli import main

    linear = len(list(B.iter_bag(killed_bag)))
    assert 201 <= linear < 301                              # up to the last complete chunk
    with pytest.raises(Exception):                          # what indexed readers do today
        _indexed_count(killed_bag)
    assert main(["bag", "repair", str(killed_bag), "--json"]) == 0
    assert f"repaired, {linear} messages" in capsys.readouterr().out
    assert _indexed_count(killed_bag) == linear
    meta = yaml.safe_load((killed_bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["message_count"] == linear and meta["custom_data"]["repaired"] == "true"
    assert meta["custom_data"]["task"] == "wipe"
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    assert counts["/safety/estop"] == 1 and counts["/arm/tcp_wrench"] == linear - 1
    # a complete bag is left alone
    before = next(killed_bag.glob("*.mcap")).read_bytes()
    assert main(["bag", "repair", str(killed_bag)]) == 0
    assert "left as it is" in capsys.readouterr().out and next(killed_bag.glob("*.mcap")).read_bytes() == before


def test_rosbags_reads_the_repaired_bag_with_its_qos(killed_bag):
    from rosbags.highlevel import AnyReader
    from rosbags.interfaces import QosDurability
    from rosbags.typesys import Stores, get_typestore

    B.repair_bag(killed_bag)
    with AnyReader([killed_bag], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
        conns = {c.topic: c for c in reader.connections}
        assert conns["/safety/estop"].ext.offered_qos_profiles[0].durability == QosDurability.TRANSIENT_LOCAL
        assert conns["/arm/tcp_wrench"].ext.offered_qos_profiles[0].durability == QosDurability.VOLATILE
        forces = [reader.deserialize(raw, c.msgtype).wrench.force.z
                  for c, _, raw in reader.messages(connections=[conns["/arm/tcp_wrench"]])]
        estop = [reader.deserialize(raw, c.msgtype).data for c, _, raw in reader.messages(connections=[conns["/safety/estop"]])]
    assert forces == [float(i) for i in range(len(forces))] and len(forces) >= 200
    assert estop == ["released"]                 # the latched state at the episode start


def test_the_recorder_repairs_what_a_killed_one_left_when_it_starts(killed_bag):
    lines = EpisodeRecorder(killed_bag.parent, min_free_mb=0.0).repair_unfinished()
    assert len(lines) == 1 and killed_bag.name in lines[0] and "repaired" in lines[0]
    assert _indexed_count(killed_bag) == len(list(B.iter_bag(killed_bag)))
    assert EpisodeRecorder(killed_bag.parent, min_free_mb=0.0).repair_unfinished() == []


def test_an_unreadable_bag_is_refused_and_left_as_it_was(tmp_path, capsys):
    from slowfast_app.cli import main

    rec = EpisodeRecorder(tmp_path, min_free_mb=0.0)
    rec.add_topic("/x", "std_msgs/msg/String")
    folder = rec.start()
    rec.stop()
    mcap = next(folder.glob("*.mcap"))
    mcap.write_bytes(b"garbage" * 10)
    assert main(["bag", "repair", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "not a readable MCAP" in err and len(err.strip().splitlines()) == 1
    assert mcap.read_bytes() == b"garbage" * 10 and not list(folder.glob("*.repair"))
    assert main(["bag", "repair", str(tmp_path / "nothing")]) == 2


def test_offered_qos_is_in_metadata_and_channels_as_rosbag2_writes_it(tmp_path):
    from mcap.reader import make_reader

    w = B.BagWriter(tmp_path / "b")
    w.add_topic("/safety/estop", "std_msgs/msg/String", [LATCHED])
    w.add_topic("/plain", "std_msgs/msg/String")
    w.close()
    meta = yaml.safe_load((w.folder / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    tm = {t["topic_metadata"]["name"]: t["topic_metadata"] for t in meta["topics_with_message_count"]}
    assert tm["/safety/estop"]["offered_qos_profiles"] == [LATCHED]   # v9: a list of mappings
    assert tm["/plain"]["offered_qos_profiles"] == []
    with open(next(w.folder.glob("*.mcap")), "rb") as f:
        chans = {c.topic: c for c in make_reader(f).get_summary().channels.values()}
    assert yaml.safe_load(chans["/safety/estop"].metadata["offered_qos_profiles"]) == [LATCHED]
    assert chans["/plain"].metadata["offered_qos_profiles"] == ""
    assert os.path.getsize(next(w.folder.glob("*.mcap"))) > 0
