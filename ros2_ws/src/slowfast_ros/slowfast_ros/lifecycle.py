"""Managed (lifecycle) nodes: configure, activate, deactivate, cleanup, as ROS 2 defines them.

The nodes that command a robot or feed it (``safety_node``, ``rdp_fast``, ``rdp_slow``,
``robot_bridge_node``, ``streamvln_nav``, ``teleop_node``) and the sensor drivers
(``realsense_node``, ``gelsight_node``) are ROS 2 lifecycle nodes, the way
ros2_control controllers and Nav2 servers are managed: *configure* builds what the node runs
(a model, filters, a control thread, a server), *activate* lets it act, *deactivate* makes it
stop acting and say so in its log (each node's docstring says what inactive means for it; a
node that commands an arm leaves it holding where it is measured), *cleanup* releases what
configure built. The standard services (``<node>/change_state``, ``<node>/get_state``) switch
them, as ``ros2 lifecycle set`` does, and ``slowfast lifecycle NODE activate|deactivate|...``
calls the same services.

With ``autostart`` (the default; :class:`ManagedParams`, one definition for every managed
node) a node configures and activates itself at start, so the stack's commands and launch
files run it as before; a configuration error still stops the node with one line (exit 2).

:class:`ArmCommander`, for the nodes that command arms from a control thread: the hold on
deactivation is published by the node's own control thread on its next tick, so no command of
the active node can follow it; the transition returns once it is out (within one control
period), or publishes it itself when the control thread is not ticking.
"""
from __future__ import annotations

import dataclasses
import threading

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from slowfast_ros.node_util import param

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


@dataclasses.dataclass
class ManagedParams:
    """The parameter every managed node declares: a managed node's parameter dataclass
    derives from this (directly or through ``arm_io.SafetyParams``)."""

    autostart: bool = param(True, "configure and activate at start; false: wait unconfigured for the lifecycle "
                                  "services (`slowfast lifecycle NODE activate`, `ros2 lifecycle set`)")


class ManagedNode(LifecycleNode):
    """Base of a managed node.

    A subclass implements ``_configure()`` (build; raise ValueError/OSError on a bad
    configuration) and ``_cleanup()`` (release what ``_configure`` built), and where
    activation and deactivation do more than set :attr:`active`, ``_activate()`` and
    ``_deactivate()`` (calling these base versions, or setting ``active`` themselves).
    ``active_note`` / ``inactive_note`` end the log line each transition writes. Its
    ``__init__`` ends with ``self.autostart(p.autostart)``."""

    active_note = "running"
    inactive_note = "not running until activated"

    def __init__(self, name: str):
        super().__init__(name)
        self.active = False
        self.configured = False
        self._configure_error: Exception | None = None
        self._autostarting = False
        self._made: list = []   # what configure made (ROS entities, closable objects): cleanup releases it

    # ------------------------------------------------------------ subclass API

    def made(self, entity):
        """Register a publisher, subscription or timer ``_configure`` created, or an object
        with a ``close()`` that owns threads or ROS entities of its own (an input reader),
        returned as is: :meth:`release_made` destroys or closes it at cleanup, in order."""
        self._made.append(entity)
        return entity

    def release_made(self) -> None:
        """Destroy every entity registered with :meth:`made`."""
        from rclpy.publisher import Publisher  # noqa: PLC0415
        from rclpy.subscription import Subscription  # noqa: PLC0415
        from rclpy.timer import Timer  # noqa: PLC0415

        for entity in self._made:
            if isinstance(entity, Publisher):
                self.destroy_publisher(entity)
            elif isinstance(entity, Subscription):
                self.destroy_subscription(entity)
            elif isinstance(entity, Timer):
                self.destroy_timer(entity)
            else:
                entity.close()
        self._made = []

    def _configure(self) -> None:
        pass

    def _cleanup(self) -> None:
        pass

    def _activate(self) -> None:
        self.active = True

    def _deactivate(self) -> None:
        self.active = False

    def autostart(self, enabled: bool) -> None:
        """Configure and activate now (``enabled``), raising the configuration's error; else
        wait, unconfigured, for the lifecycle services."""
        if not enabled:
            self.get_logger().info("unconfigured: waiting for configure and activate "
                                   f"(`slowfast lifecycle {self.get_name()} activate`)")
            return
        self._autostarting = True
        try:
            ok = self.trigger_configure() == SUCCESS
        finally:
            self._autostarting = False
        if not ok:
            raise self._configure_error or RuntimeError("configure failed")
        self.trigger_activate()

    # ------------------------------------------------------------ transitions

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except (ValueError, OSError) as exc:
            self._configure_error = exc
            if not self._autostarting:   # at autostart the node exits with this one line instead
                self.get_logger().error(f"configure failed: {exc}")
            return FAILURE
        self.configured = True
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._activate()
        self.get_logger().info(f"active: {self.active_note}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self.get_logger().warning(f"inactive: {self.inactive_note}")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        self.configured = False
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return SUCCESS

    def close(self) -> None:
        """On the way out: an active node deactivates (a node commanding an arm holds it),
        then releases everything."""
        if self.active:
            self._deactivate()
        if self.configured:
            self._cleanup()
            self.configured = False


class ArmCommander(ManagedNode):
    """Base of a lifecycle node that commands arms from a control thread.

    A subclass implements ``_configure()``, ``_cleanup()`` (as :class:`ManagedNode`),
    ``_hold()`` (publish a hold at every arm's measured pose) and ``control_period`` (s); its
    control thread calls :meth:`command_state` once per tick and acts on the answer."""

    control_period = 0.005
    active_note = "commanding the arms from where they are measured"
    inactive_note = "arms held where measured; no command until activated"

    def __init__(self, name: str):
        super().__init__(name)
        self._gate = threading.Lock()
        self._restart = False
        self._hold_pending = False
        self._held = threading.Event()

    # ------------------------------------------------------------ subclass API

    def _hold(self) -> None:
        raise NotImplementedError

    def command_state(self) -> str:
        """For the control thread, once per tick: ``"run"`` (command), ``"restart"`` (just
        activated: restart filters and executors from the measured pose, then command) or
        ``"idle"`` (inactive: command nothing). On the first tick after a deactivation it
        publishes the hold (``_hold``) itself, in this thread, before answering ``"idle"``."""
        with self._gate:
            hold, self._hold_pending = self._hold_pending, False
            if hold or not self.active:
                state = "hold" if hold else "idle"
            elif self._restart:
                self._restart = False
                state = "restart"
            else:
                state = "run"
        if state == "hold":
            self._hold()
            self._held.set()   # the deactivation waiting in _deactivate may return
            return "idle"
        return state

    def restart_pending(self) -> None:
        """The control thread could not restart yet (no measured state): ask again next tick."""
        with self._gate:
            self._restart = self.active

    # ------------------------------------------------------------ transitions

    def _activate(self) -> None:
        with self._gate:
            self.active, self._restart, self._hold_pending = True, True, False

    def _deactivate(self) -> None:
        """Leave every arm holding where it is measured and command nothing more."""
        with self._gate:
            was_active, self.active = self.active, False
            self._held.clear()
            self._hold_pending = was_active
        if was_active and not self._held.wait(max(0.1, 5 * self.control_period)):
            with self._gate:
                self._hold_pending = False   # the control thread is not ticking: hold from here
            self._hold()
