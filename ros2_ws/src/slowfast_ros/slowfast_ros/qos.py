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
"""
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
