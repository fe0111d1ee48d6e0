"""`slowfast lifecycle NODE [get|configure|activate|deactivate|cleanup|shutdown]`: switch a
running managed node through its standard lifecycle services (`<node>/get_state`,
`<node>/change_state`), as `ros2 lifecycle get|set` does.

The nodes that command arms (`safety_node`, `rdp_fast`, `robot_bridge_node`) are managed:
`deactivate` makes one hold every arm where it is measured and command nothing until
`activate`, which restarts it from the measured pose. So are `rdp_slow` (inactive: no
inference, no chunk), `teleop_node` (inactive: nothing forwarded from the headset) and
`streamvln_nav` (deactivate stops the base with one zero `cmd_vel`), and the sensor drivers
`realsense_node` and `gelsight_node` (inactive: nothing published but /diagnostics). Prints the node's state
after the call; exit 2 when the node is not running or refuses the transition.
"""
from __future__ import annotations

import argparse

TRANSITIONS = ("configure", "activate", "deactivate", "cleanup", "shutdown")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("node", help="node name, with its namespace if it has one (e.g. rdp_fast, /robot/safety_node)")
    p.add_argument("transition", nargs="?", default="get", choices=("get", *TRANSITIONS),
                   help="the transition to ask for (default get: print the state)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the node's services")


def call(node_name: str, transition: str = "get", timeout: float = 10.0) -> str:
    """Ask ``node_name`` for ``transition`` (or its state, ``get``); its state afterwards.
    ValueError when the node does not answer or refuses."""
    import rclpy  # noqa: PLC0415
    from lifecycle_msgs.msg import Transition  # noqa: PLC0415
    from lifecycle_msgs.srv import ChangeState, GetState  # noqa: PLC0415

    name = "/" + node_name.strip("/")
    own = not rclpy.ok()
    if own:
        rclpy.init()
    node = rclpy.create_node("slowfast_lifecycle_cli")
    try:
        def ask(srv_type, service, request):
            client = node.create_client(srv_type, service)
            if not client.wait_for_service(timeout_sec=timeout):
                raise ValueError(f"{node_name}: no {service} service after {timeout:g} s "
                                 "(not running, or not a lifecycle node)")
            future = client.call_async(request)
            rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
            if future.result() is None:
                raise ValueError(f"{node_name}: {service} did not answer in {timeout:g} s")
            return future.result()

        if transition != "get":
            req = ChangeState.Request()
            req.transition.id = getattr(Transition, f"TRANSITION_{transition.upper()}")
            if transition == "shutdown":   # from whichever state the node is in
                state = ask(GetState, f"{name}/get_state", GetState.Request()).current_state.label
                req.transition.id = {"unconfigured": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
                                     "inactive": Transition.TRANSITION_INACTIVE_SHUTDOWN,
                                     "active": Transition.TRANSITION_ACTIVE_SHUTDOWN}.get(state, 0)
            if not ask(ChangeState, f"{name}/change_state", req).success:
                state = ask(GetState, f"{name}/get_state", GetState.Request()).current_state.label
                raise ValueError(f"{node_name}: transition {transition} refused in state {state}")
        return ask(GetState, f"{name}/get_state", GetState.Request()).current_state.label
    finally:
        node.destroy_node()
        if own:
            rclpy.try_shutdown()


def run(args: argparse.Namespace) -> int:
    print(call(args.node, args.transition, args.timeout))
    return 0
