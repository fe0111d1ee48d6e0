"""One module per node. Each node parses its parameters, builds core objects from
``policy/``, ``sim/`` or ``teleop_tactar/``, converts messages at the edge with
:mod:`slowfast_ros.msgs`, and publishes. No algorithms here."""
