"""The container deployment of the robot path: the compose services of the robot reach the
cameras, run models on a reserved GPU, talk DDS over the host network, and the images they
use exist (no Docker engine here: the files are checked, not run)."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _merge_conflicts(node, where="") -> list[str]:
    """Keys that two maps merged into the same mapping (``<<: [*a, *b]``) both define: YAML
    resolvers (PyYAML's versions, Docker Compose's Go parser) disagree on which one wins."""
    out = []
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "<<" and isinstance(value, yaml.SequenceNode):
                seen: dict[str, int] = {}
                for i, merged in enumerate(value.value):
                    for k, _ in merged.value:
                        if k.value in seen:
                            out.append(f"{where}: '{k.value}' in merged maps {seen[k.value]} and {i}")
                        seen[k.value] = i
            out += _merge_conflicts(value, f"{where}/{key.value}")
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out += _merge_conflicts(item, f"{where}[{i}]")
    return out


def _services():
    """The services as Docker Compose reads them: merges resolved, which is only unambiguous
    when no two merged maps share a key (checked first)."""
    text = (ROOT / "docker-compose.yml").read_text()
    conflicts = _merge_conflicts(yaml.compose(text))
    assert not conflicts, conflicts
    return yaml.safe_load(text)["services"]


def test_no_service_merges_two_anchors_that_define_the_same_key():
    assert _merge_conflicts(yaml.compose((ROOT / "docker-compose.yml").read_text())) == []
    ambiguous = "a: &a {volumes: [x]}\nb: &b {volumes: [y]}\ns: {<<: [*a, *b]}\n"
    assert _merge_conflicts(yaml.compose(ambiguous)) == ["/s: 'volumes' in merged maps 0 and 1"]


def test_every_service_that_names_a_model_folder_mounts_it():
    for name, svc in _services().items():
        if "/opt/slowfast/models" in " ".join(svc["command"]):
            assert any(v.endswith(":/opt/slowfast/models:ro") for v in svc["volumes"]), name


def _targets():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    return text, set(re.findall(r"^FROM \S+ AS (\S+)", text, flags=re.M))


def test_profiles_of_the_issue_that_have_entry_points_are_there():
    profiles = {p for s in _services().values() for p in s["profiles"]}
    assert {"sim", "robot", "gazebo", "policy"} <= profiles


def test_robot_services_reach_cameras_and_models_use_the_gpu():
    services = _services()
    robot = services["robot"]
    assert "/dev:/dev" in robot["volumes"]                          # hot-plugged cameras are found again
    assert {"c 81:* rmw", "c 189:* rmw"} <= set(robot["device_cgroup_rules"])
    assert not robot.get("privileged", False)
    for name, svc in services.items():
        assert svc["network_mode"] == "host" and svc["ipc"] == "host", name
        cmd = " ".join(svc["command"])
        runs_a_model = re.search(r"\brdp_(slow|fast)\b", cmd) or svc["profiles"] == ["policy"]
        if runs_a_model:
            dev = svc["deploy"]["resources"]["reservations"]["devices"][0]
            assert dev["capabilities"] == ["gpu"] and dev["driver"] == "nvidia", name
            assert svc["image"] == "slowfast:policy", name             # the CUDA onnxruntime image
            if svc["profiles"] != ["policy"]:
                assert "/opt/slowfast/models" in " ".join(svc["volumes"]), name


def test_images_build_the_ros_package_with_colcon_and_the_gpu_image_has_cuda_onnxruntime():
    text, targets = _targets()
    assert {"sim", "policy", "gazebo"} <= targets
    assert re.search(r"^FROM ros:\$\{ROS_DISTRO\}-ros-base AS base", text, flags=re.M)
    assert "ARG ROS_DISTRO=kilted" in text and "colcon build" in text
    policy = text[text.index("AS policy"):]
    assert "onnxruntime-gpu[cuda,cudnn]" in policy.split("FROM")[0]
    gazebo = text[text.index("AS gazebo"):]
    assert "ros-${ROS_DISTRO}-ros-gz" in gazebo
    for name, svc in _services().items():
        if "build" in svc:
            assert svc["build"]["target"] in targets, name
