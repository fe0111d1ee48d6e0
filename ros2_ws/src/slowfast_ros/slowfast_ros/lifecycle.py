"""Managed (lifecycle) nodes that command arms: configure, activate, deactivate holds.

The nodes that command an arm (``safety_node``, ``rdp_fast``) are ROS 2 lifecycle nodes, the
way ros2_control controllers and Nav2 servers are managed: *configure* builds what the node
runs (filters, the decoder, the control thread), *activate* lets it command the arms, starting
from where they are measured, *deactivate* commands every arm to hold where it is measured
and then commands nothing, *cleanup* releases what configure built. The standard services
(``<node>/change_state``, ``<node>/get_state``) switch them, as ``ros2 lifecycle set`` does,
and ``slowfast lifecycle NODE activate|deactivate|...`` calls the same services.

With ``autostart`` (the default) a node configures and activates itself at start, so the
stack's commands and launch files run it as before; a configuration error still stops the
node with one line (exit 2).

The hold on deactivation is published by the node's own control thread on its next tick, so
no command of the active node can follow it; the transition returns once it is out (within
one control period), or publishes it itself when the control thread is not ticking.
"""
from __future__ import annotations

import threading

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class ArmCommander(LifecycleNode):
    """Base of a lifecycle node that commands arms from a control thread.

    A subclass implements ``_configure()`` (build; raise ValueError/OSError on a bad
    configuration), ``_cleanup()`` (release what ``_configure`` built), ``_hold()`` (publish a
    hold at every arm's measured pose) and ``control_period`` (s); its control thread calls
    :meth:`command_state` once per tick and acts on the answer."""

    control_period = 0.005

    def __init__(self, name: str):
        super().__init__(name)
        self._gate = threading.Lock()
        self.active = False
        self.configured = False
        self._restart = False
        self._hold_pending = False
        self._held = threading.Event()
        self._configure_error: Exception | None = None
        self._autostarting = False

    # ------------------------------------------------------------ subclass API

    def _configure(self) -> None:
        raise NotImplementedError

    def _cleanup(self) -> None:
        raise NotImplementedError

    def _hold(self) -> None:
        raise NotImplementedError

    def command_state(self) -> str:
        """For the control thread, once per tick: ``"run"`` (command), ``"restart"`` (just
        activated: restart filters and executors from the measured pose, then command),
        ``"hold"`` (just deactivated: publish the hold now, then nothing) or ``"idle"``
        (inactive: command nothing)."""
        with self._gate:
            if self._hold_pending:
                self._hold_pending = False
                return "hold"
            if not self.active:
                return "idle"
            if self._restart:
                self._restart = False
                return "restart"
            return "run"

    def restart_pending(self) -> None:
        """The control thread could not restart yet (no measured state): ask again next tick."""
        with self._gate:
            self._restart = self.active

    def held(self) -> None:
        """The control thread published the hold that :meth:`command_state` asked for."""
        self._held.set()

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
        with self._gate:
            self.active, self._restart, self._hold_pending = True, True, False
        self.get_logger().info("active: commanding the arms from where they are measured")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_commanding()
        self.get_logger().warning("inactive: arms held where measured; no command until activated")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        self.configured = False
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return SUCCESS

    def _stop_commanding(self) -> None:
        """Leave every arm holding where it is measured and command nothing more."""
        with self._gate:
            was_active, self.active = self.active, False
            self._held.clear()
            self._hold_pending = was_active
        if was_active and not self._held.wait(max(0.1, 5 * self.control_period)):
            with self._gate:
                self._hold_pending = False   # the control thread is not ticking: hold from here
            self._hold()

    def close(self) -> None:
        """On the way out: an active node holds its arms, then releases everything."""
        self._stop_commanding()
        if self.configured:
            self._cleanup()
            self.configured = False
