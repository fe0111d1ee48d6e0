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
with the 512 KB segment, UDP to localhost) and reads no ``FASTDDS_BUILTIN_TRANSPORTS``: there
the stack runs its processes with the Fast DDS profile :data:`LOCALHOST_PROFILE` instead, which
keeps discovery on the host as LOCALHOST does, with the 8 MB segment.
"""
import os
from pathlib import Path

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
RANGE_VAR = "ROS_AUTOMATIC_DISCOVERY_RANGE"
_PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
#: Fast DDS default profile for discovery on this host with the stack's transports: what
#: LOCALHOST does (no multicast, loopback UDP, the initial peer 127.0.0.1) with the 8 MB
#: shared-memory segment of :data:`TRANSPORTS` instead of rmw_fastrtps's 512 KB one
LOCALHOST_PROFILE = Path(__file__).with_name("fastdds_localhost.xml")


def transport_env(environ=os.environ) -> dict[str, str]:
    """The environment the stack adds for its DDS transports, with Fast DDS (the default RMW):
    :data:`TRANSPORTS`; with LOCALHOST discovery, where rmw_fastrtps would read no
    TRANSPORTS, :data:`LOCALHOST_PROFILE` and the range SYSTEM_DEFAULT (rmw_fastrtps then
    leaves the participant to the profile; the deprecated ROS_LOCALHOST_ONLY, which would
    force its own set-up back, is emptied). Nothing when the user set Fast DDS's transports
    or an XML profile, gave static peers with LOCALHOST (the profile has no place for them),
    or runs another RMW. FASTDDS_BUILTIN_TRANSPORTS set to :data:`TRANSPORTS` itself (the
    compose file sets it for every service) is the stack's, not the user's: with LOCALHOST the
    profile still applies (its transports, not the variable's, are used)."""
    if environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        return {}
    if environ.get(TRANSPORTS_VAR) not in (None, "", TRANSPORTS) or any(environ.get(v) for v in _PROFILE_VARS):
        return {}
    if discovery_range(environ) == "LOCALHOST":
        if environ.get("ROS_STATIC_PEERS"):
            return {}
        env = {RANGE_VAR: "SYSTEM_DEFAULT", _PROFILE_VARS[0]: str(LOCALHOST_PROFILE)}
        if environ.get("ROS_LOCALHOST_ONLY"):
            env["ROS_LOCALHOST_ONLY"] = ""
        return env
    return {TRANSPORTS_VAR: TRANSPORTS}


def _stack_localhost(environ) -> bool:
    """Whether ``environ`` is what :func:`transport_env` made of LOCALHOST discovery."""
    return (environ.get(RANGE_VAR, "").upper() == "SYSTEM_DEFAULT"
            and environ.get(_PROFILE_VARS[0]) == str(LOCALHOST_PROFILE))


def discovery_range(environ=os.environ) -> str:
    """ROS 2's automatic discovery range for processes started from ``environ`` (the
    deprecated ROS_LOCALHOST_ONLY=1 counts as LOCALHOST when no range is set, and so does the
    stack's own form of it, :data:`LOCALHOST_PROFILE`)."""
    if _stack_localhost(environ):
        return "LOCALHOST"
    return (environ.get(RANGE_VAR)
            or ("LOCALHOST" if environ.get("ROS_LOCALHOST_ONLY") == "1" else "SUBNET")).upper()


def transports_in_effect(environ=os.environ) -> str:
    """In words, the DDS transports a stack process started from ``environ`` gets (for
    ``slowfast doctor``): with LOCALHOST discovery left to rmw_fastrtps (the user's own Fast
    DDS settings, static peers) it sets its own and reads no FASTDDS_BUILTIN_TRANSPORTS,
    which costs a recording samples (docs/teleop-and-recording.md)."""
    rmw = environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if rmw != "rmw_fastrtps_cpp":
        return f"those of {rmw}"
    environ = {**environ, **transport_env(environ)}      # as the stack starts its processes
    if _stack_localhost(environ):
        return (f"the stack's on this host ({LOCALHOST_PROFILE.name}: shared memory with an 8 MB segment, "
                f"UDP on loopback)")
    if discovery_range(environ) == "LOCALHOST":
        return (f"rmw_fastrtps's own (discovery LOCALHOST: {TRANSPORTS_VAR} is not read, nor an XML profile's "
                f"transports; a recording beside cameras loses samples: record with the stack's settings or "
                f"{RANGE_VAR}=SUBNET)")
    for var in _PROFILE_VARS:
        if environ.get(var):
            return f"the Fast DDS XML profile {environ[var]}"
    value = environ.get(TRANSPORTS_VAR) or TRANSPORTS
    return f"{TRANSPORTS_VAR}={value} ({'the stack' if value == TRANSPORTS else 'yours'})"
