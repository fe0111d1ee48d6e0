"""The QoS profiles of the stack, in one place.

- ``SENSOR_PUB``: drivers and the sim publish sensors reliable + keep-last, so both a
  best-effort control loop and a reliable recorder can subscribe (a best-effort publisher
  would be invisible to a reliable subscriber).
- ``SENSOR_SUB``: control loops want the freshest sample, never a backlog: best effort,
  keep last few.
- ``RECORD_SUB``: the recorder wants every message: reliable, deep queue.
- ``COMMAND``: commands to the robot: reliable, shallow (an old command is worthless).
- ``LATCHED``: state that a late joiner must see (e-stop): reliable, transient local, keep
  last 1.
- ``EVENTS``: episode events (start, end): like ``LATCHED`` but keep last 10, because an
  episode's end and the next start leave within a millisecond and a depth of 1 lets the
  start replace the end before a subscriber has taken it (a recorder then never closes the
  episode).

Transports: the stack's processes use Fast DDS's default transports (shared memory on one
host, UDP between hosts) with 4 MB socket buffers, ``DEFAULT?sockets_size=4MB`` (:data:`TRANSPORTS`),
unless the user has configured Fast DDS (:func:`transport_env`). The buffers size the
shared-memory segment too (twice the socket buffer: 8 MB), so a 640x480 camera frame (921 KB)
crosses in shared memory; with Fast DDS's own default (a 512 KB segment) it went out as UDP
fragments and the recorder lost 141 of 37 800 messages in 30 s (pose, wrench, tactile),
with the larger buffers none. Fast DDS's ``LARGE_DATA`` mode, used before, recorded without
loss too, but with it about 1 stack start in 12 left two nodes that never matched (discovery
over multicast only, then TCP): in a stress test of 8 processes starting together on 2
loaded cores, LARGE_DATA left a pair unmatched in 5 of 15 starts, the default transports
(with and without the larger buffers) in none of 24 (docs/reactive-runtime.md). With
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` rmw_fastrtps sets its own transports (shared memory
with the 512 KB segment, UDP to localhost) and reads no ``FASTDDS_BUILTIN_TRANSPORTS``.
"""
import os

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

SENSOR_PUB = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10,
    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)

SENSOR_SUB = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=5,
    reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)

RECORD_SUB = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=200,
    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)

COMMAND = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=2,
    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)

LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1,
    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)

EVENTS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10,
    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _duration(d) -> dict:
    ns = int(d.nanoseconds)
    return {"sec": ns // 1_000_000_000, "nsec": ns % 1_000_000_000}


def profile_dict(q: QoSProfile) -> dict:
    """A QoS profile as rosbag2 records an offering publisher's (metadata version 9: policy
    names in lower case, durations as sec/nsec; discovery reports no history or depth, so a
    discovered profile reads ``unknown``/0 as in a bag ``ros2 bag record`` writes)."""
    return {"history": q.history.name.lower(), "depth": int(q.depth),
            "reliability": q.reliability.name.lower(), "durability": q.durability.name.lower(),
            "deadline": _duration(q.deadline), "lifespan": _duration(q.lifespan),
            "liveliness": q.liveliness.name.lower(),
            "liveliness_lease_duration": _duration(q.liveliness_lease_duration),
            "avoid_ros_namespace_conventions": bool(q.avoid_ros_namespace_conventions)}


def offered(node, topic: str) -> list[dict]:
    """The QoS every publisher of ``topic`` offers now (see :func:`profile_dict`)."""
    return [profile_dict(i.qos_profile) for i in node.get_publishers_info_by_topic(topic)]


def record_profile(offers: list[dict], depth: int) -> QoSProfile:
    """The recorder's subscription for a topic with these offers: reliable and deep, and
    transient local when every publisher is, so a latched message sent before the recorder
    joined is recorded too (rosbag2 adapts its subscriptions the same way)."""
    latched = bool(offers) and all(o["durability"] == "transient_local" for o in offers)
    reliable = not offers or all(o["reliability"] == "reliable" for o in offers)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


TRANSPORTS_VAR, TRANSPORTS = "FASTDDS_BUILTIN_TRANSPORTS", "DEFAULT?sockets_size=4MB"
_PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
_USER_DDS_SETTINGS = (TRANSPORTS_VAR, *_PROFILE_VARS)


def transport_env(environ=os.environ) -> dict[str, str]:
    """The environment the stack adds for its DDS transports: :data:`TRANSPORTS` for Fast DDS
    (the default RMW), nothing when the user set Fast DDS's transports or an XML profile,
    or runs another RMW."""
    if environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        return {}
    if any(environ.get(k) for k in _USER_DDS_SETTINGS):
        return {}
    return {TRANSPORTS_VAR: TRANSPORTS}


def discovery_range(environ=os.environ) -> str:
    """ROS 2's automatic discovery range for processes started from ``environ`` (the
    deprecated ROS_LOCALHOST_ONLY=1 counts as LOCALHOST when no range is set)."""
    return (environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
            or ("LOCALHOST" if environ.get("ROS_LOCALHOST_ONLY") == "1" else "SUBNET")).upper()


def transports_in_effect(environ=os.environ) -> str:
    """In words, the DDS transports a stack process started from ``environ`` gets (for
    ``slowfast doctor``): with LOCALHOST discovery rmw_fastrtps sets its own and reads no
    FASTDDS_BUILTIN_TRANSPORTS, which costs a recording samples (docs/teleop-and-recording.md)."""
    rmw = environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if rmw != "rmw_fastrtps_cpp":
        return f"those of {rmw}"
    rng = discovery_range(environ)
    if rng in ("LOCALHOST", "OFF"):
        return (f"rmw_fastrtps's own (discovery {rng}: {TRANSPORTS_VAR} is not read, and a recording "
                f"beside cameras loses samples; record with ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET)")
    for var in _PROFILE_VARS:
        if environ.get(var):
            return f"the Fast DDS XML profile {environ[var]}"
    value = environ.get(TRANSPORTS_VAR) or TRANSPORTS
    return f"{TRANSPORTS_VAR}={value} ({'the stack' if value == TRANSPORTS else 'yours'})"
