"""Nested config dataclasses as node parameters: one definition, flattened as `outer.inner`."""
from __future__ import annotations

import dataclasses

import pytest

from policy.safety import SafetyConfig
from slowfast_data.fields import build, described, field_default, flat_fields


@dataclasses.dataclass
class _Params:
    rate: float = described(200.0, "rate (Hz)", 1.0, 1000.0)
    safety: SafetyConfig = described(SafetyConfig(command_timeout=0.05), "limits")


def test_nested_config_flattens_with_its_own_descriptions_and_ranges():
    flat = {f.name: f for f in flat_fields(_Params)}
    assert flat["safety.max_speed"].default == SafetyConfig().max_speed
    assert flat["safety.command_timeout"].default == 0.05      # the outer default's value
    assert flat["safety.max_speed"].range == (1e-4, 3.0)
    assert "speed" in flat["safety.max_speed"].help
    assert flat["rate"].range == (1.0, 1000.0)


def test_build_takes_flat_values_and_validates_the_inner_config_by_its_full_name():
    p = build(_Params, {"safety.max_speed": 0.1, "safety.workspace_lo": [-1, -1, 0], "rate": 500})
    assert p.safety.max_speed == 0.1 and p.safety.workspace_lo == (-1, -1, 0) and p.rate == 500.0
    assert p.safety.command_timeout == 0.05 and p.safety.force_limit == SafetyConfig().force_limit
    with pytest.raises(ValueError, match=r"^safety\.max_speed: 9 outside"):
        build(_Params, {"safety.max_speed": 9.0})
    with pytest.raises(KeyError):
        build(_Params, {"safety.max_sped": 0.1})
    with pytest.raises(ValueError, match=r"^safety\.max_speed: nan outside"):   # NaN is in no range
        build(_Params, {"safety.max_speed": float("nan")})


def test_the_nodes_that_command_arms_take_the_filters_defaults():
    """safety_node and rdp_fast declare the filter's limits from SafetyConfig: one set of defaults
    whatever the entry point (they once differed: force limit 60 vs 40 N, workspace)."""
    from slowfast_ros.nodes.rdp_fast import PARAMS as FAST
    from slowfast_ros.nodes.safety_node import PARAMS as GUARD

    for spec in (FAST, GUARD):
        flat = {f.name: f.default for f in flat_fields(spec)}
        for g in dataclasses.fields(SafetyConfig):
            if spec is FAST and g.name == "command_timeout":
                continue
            assert flat[f"safety.{g.name}"] == getattr(SafetyConfig(), g.name), (spec, g.name)
        assert not any(k in flat for k in ("max_speed", "force_limit", "max_contact_age"))


def test_the_bridge_takes_the_gates_defaults():
    """robot_bridge_node declares the command gate's limits from hardware.robot.GateConfig as
    gate.* (it once restated each of them field by field)."""
    from hardware.robot import GateConfig
    from slowfast_ros.nodes.robot_bridge_node import PARAMS

    flat = {f.name: f for f in flat_fields(PARAMS)}
    for g in dataclasses.fields(GateConfig):
        assert flat[f"gate.{g.name}"].default == getattr(GateConfig(), g.name)
        assert flat[f"gate.{g.name}"].help == g.metadata["help"]
        assert g.name not in flat
    assert build(PARAMS, {"gate.workspace_min": [-0.5, -0.5, 0.0]}).gate.workspace_min == (-0.5, -0.5, 0.0)
    with pytest.raises(ValueError, match=r"^gate\.deadline: "):
        build(PARAMS, {"gate.deadline": 0.0})


def test_the_recorder_takes_the_recorders_defaults():
    """recorder_node declares how bags are written from teleop_tactar.recorder.RecorderConfig
    as bag.*; the recorder itself takes the same defaults."""
    from slowfast_ros.nodes.recorder_node import PARAMS
    from teleop_tactar.recorder import RecorderConfig

    flat = {f.name: f.default for f in flat_fields(PARAMS)}
    for g in dataclasses.fields(RecorderConfig):
        assert flat[f"bag.{g.name}"] == getattr(RecorderConfig(), g.name) and g.name not in flat
    with pytest.raises(ValueError, match=r"^bag\.compression: "):
        build(PARAMS, {"bag.compression": "gzip"})


def test_teleop_takes_the_retargeting_defaults():
    """teleop_node declares the retargeting from teleop_tactar.retarget.RetargetConfig as
    retarget.*; the scripted operator's scale is the same value."""
    from slowfast_ros.nodes.operator_node import PARAMS as OPERATOR
    from slowfast_ros.nodes.teleop_node import PARAMS
    from teleop_tactar.retarget import RetargetConfig

    flat = {f.name: f.default for f in flat_fields(PARAMS)}
    for g in dataclasses.fields(RetargetConfig):
        assert flat[f"retarget.{g.name}"] == getattr(RetargetConfig(), g.name) and g.name not in flat
    assert {f.name: f.default for f in flat_fields(OPERATOR)}["scale"] == RetargetConfig().scale
    with pytest.raises(ValueError, match=r"^retarget\.scale: "):
        build(PARAMS, {"retarget.scale": 100.0})


def test_the_nav_node_takes_the_trackers_defaults():
    """streamvln_nav declares the goal tracker's values from policy.streamvln.nav_control.
    TrackerConfig as tracker.* (it restated three of them)."""
    from policy.streamvln.nav_control import TrackerConfig
    from slowfast_ros.nodes.streamvln_nav import PARAMS

    flat = {f.name: f for f in flat_fields(PARAMS)}
    for g in dataclasses.fields(TrackerConfig):
        assert flat[f"tracker.{g.name}"].default == getattr(TrackerConfig(), g.name) and g.name not in flat
        assert flat[f"tracker.{g.name}"].range == g.metadata["range"]
    with pytest.raises(ValueError, match=r"^tracker\.max_linear must be in \(0.0, 2.0\]"):
        build(PARAMS, {"tracker.max_linear": 3.0})


def test_the_nav_sim_takes_the_sims_defaults_two_levels_deep():
    """nav_sim_node declares the nav sim's camera, base and layout from sim.nav.NavConfig as
    nav.* and nav.layout.* (it restated six of them)."""
    from sim.nav import LayoutConfig, NavConfig
    from slowfast_ros.nodes.nav_sim_node import PARAMS

    flat = {f.name: f for f in flat_fields(PARAMS)}
    assert flat["nav.camera_width"].default == NavConfig().camera_width
    assert flat["nav.layout.rooms_x"].default == LayoutConfig().rooms_x and flat["nav.layout.rooms_x"].range == (1, 6)
    assert not any(k in flat for k in ("camera_width", "rooms_x", "nav.layout"))
    p = build(PARAMS, {"nav.layout.room_size": 6, "nav.hfov_deg": 69})
    assert p.nav.layout.room_size == 6.0 and p.nav.hfov_deg == 69.0 and p.nav.layout.rooms_y == LayoutConfig().rooms_y
    with pytest.raises(ValueError, match=r"^nav\.layout\.rooms_x must be"):
        build(PARAMS, {"nav.layout.rooms_x": 9})


def test_the_nav_node_assumes_the_nav_sims_camera_mount():
    """streamvln_nav's camera.* and the nav sim's camera are one mount (they were written in
    four places: the node, the sim's pose helper, its MJCF and NavConfig), and the node's
    camera pose is the sim's."""
    import numpy as np

    from sim.nav.env import NavConfig, camera_pose_at
    from slowfast_data.geometry import BaseCameraMount, base_camera_pose
    from slowfast_ros.nodes.streamvln_nav import PARAMS

    flat = {f.name: f.default for f in flat_fields(PARAMS)}
    assert (flat["camera.x"], flat["camera.z"]) == (BaseCameraMount().x, BaseCameraMount().z)
    assert NavConfig().camera_height_m == BaseCameraMount().z and "camera_x" not in flat
    assert np.array_equal(base_camera_pose(1.0, 2.0, 0.3, build(PARAMS, {}).camera),
                          camera_pose_at(1.0, 2.0, 0.3, NavConfig().camera_height_m))
    with pytest.raises(ValueError, match=r"^camera\.z: "):
        build(PARAMS, {"camera.z": 5.0})


def test_teleop_and_its_cli_take_the_servers_defaults():
    """teleop_node declares the server from teleop_tactar.server_config.ServerConfig as server.*;
    `slowfast teleop`'s options and the scripted operator's port default to the same values."""
    import argparse

    from slowfast_app.cli import teleop as teleop_cli
    from slowfast_ros.nodes.operator_node import PARAMS as OPERATOR
    from slowfast_ros.nodes.teleop_node import PARAMS
    from teleop_tactar.server_config import ServerConfig

    flat = {f.name: f.default for f in flat_fields(PARAMS)}
    for g in dataclasses.fields(ServerConfig):
        assert flat[f"server.{g.name}"] == getattr(ServerConfig(), g.name) and g.name not in flat
    parser = argparse.ArgumentParser()
    teleop_cli.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, args.token) == (ServerConfig().host, ServerConfig().port, ServerConfig().token)
    assert {f.name: f.default for f in flat_fields(OPERATOR)}["port"] == ServerConfig().port
    with pytest.raises(ValueError, match=r"^server\.token: binding to 0\.0\.0\.0"):
        build(PARAMS, {"server.host": "0.0.0.0"})


def test_rdp_fast_and_the_bridge_keep_their_flat_names_from_their_cores():
    """rdp_fast's loop settings are policy.serving.FastLoopConfig, robot_bridge_node's own
    hardware.bridge.BridgeConfig: the same flat names, defaults and validation as before."""
    from hardware.bridge import BridgeConfig
    from policy.serving import FastLoopConfig
    from slowfast_ros.nodes import rdp_fast, robot_bridge_node

    for params, core in ((rdp_fast.PARAMS, FastLoopConfig), (robot_bridge_node.PARAMS, BridgeConfig)):
        flat = {f.name: f for f in flat_fields(params)}
        for f in dataclasses.fields(core):
            default = field_default(f)
            if dataclasses.is_dataclass(default):
                continue     # a nested config (gate.*): checked above
            assert flat[f.name].default == default and flat[f.name].help == f.metadata["help"]
    assert build(rdp_fast.PARAMS, {"export_dir": "x", "cpu": 2}).cpu == 2
    with pytest.raises(ValueError, match=r"^tick_source: "):
        build(rdp_fast.PARAMS, {"export_dir": "x", "tick_source": "tock"})
    p = build(rdp_fast.PARAMS, {"export_dir": "x", "force.ref": 10.0, "force.normal_tool": [0.0, 0.0, 1.0]})
    assert p.force.ref == 10.0 and p.force.enabled and tuple(p.force.normal_tool) == (0.0, 0.0, 1.0)
    assert not build(rdp_fast.PARAMS, {"export_dir": "x"}).force.enabled          # off unless asked
    with pytest.raises(ValueError, match=r"^force\.ref: "):
        build(rdp_fast.PARAMS, {"export_dir": "x", "force.ref": -1.0})
    with pytest.raises(ValueError, match=r"^rate_hz: "):
        build(robot_bridge_node.PARAMS, {"rate_hz": 0.5})
