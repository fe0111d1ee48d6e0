"""The locked setup: pyproject.toml and the lock files agree, and this environment holds
exactly the locked versions (`make setup` installs the lock with hash checking)."""
from __future__ import annotations

import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
REQ = ROOT / "requirements"
LOCKS = {"lock.txt": ("cpu", "ros-wheels", "dev"), "lock-gpu.txt": ("gpu", "ros-wheels", "dev")}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _wanted(extras) -> list[Requirement]:
    """What the lock must satisfy: the dependencies, the extras and the build requirements."""
    pp = _pyproject()
    reqs = [Requirement(r) for r in pp["project"]["dependencies"]]
    for e in extras:
        reqs += [Requirement(r) for r in pp["project"]["optional-dependencies"][e]]
    reqs += [Requirement(r) for r in pp["build-system"]["requires"]]
    return reqs


def _lock(name: str) -> dict[str, list[tuple[Version, Marker | None, int]]]:
    """name -> [(pinned version, its marker, number of hashes)] (a universal lock may pin a
    package twice, for different Python versions)."""
    out: dict = {}
    text = (REQ / name).read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\\n]+))?", block)
        if not m:
            continue
        marker = Marker(m.group(3).strip()) if m.group(3) else None
        out.setdefault(canonicalize_name(m.group(1)), []).append(
            (Version(m.group(2)), marker, block.count("--hash=sha256:")))
    return out


def _torch_pin(name: str) -> Version:
    return Version((REQ / name).read_text().split("==")[1].strip())


@pytest.mark.parametrize("lock,extras", LOCKS.items())
def test_every_requirement_of_pyproject_is_locked_at_a_version_it_allows(lock, extras):
    pins = _lock(lock)
    torch_in = "torch-cpu.in" if lock == "lock.txt" else "torch-gpu.in"
    for req in _wanted(extras):
        if req.marker is not None and not req.marker.evaluate({"platform_machine": "x86_64"}):
            continue
        name = canonicalize_name(req.name)
        if name == "torch" and lock == "lock.txt":
            # the CPU build is installed by version before the lock (Makefile TORCH_VERSION)
            assert req.specifier.contains(_torch_pin(torch_in), prereleases=True), (req, torch_in)
            continue
        assert name in pins, f"{lock}: {req} is in pyproject.toml but not locked (run `make lock`)"
        for version, _marker, hashes in pins[name]:
            assert req.specifier.contains(version, prereleases=True), \
                f"{lock}: {name}=={version} does not satisfy pyproject.toml's {req} (run `make lock`)"
            assert hashes >= 1, f"{lock}: {name} has no hash"


def _sources(block: str) -> set[str]:
    """The "# via" annotations of one lock entry: what asked for the package."""
    via = block.split("# via", 1)[1] if "# via" in block else ""
    return {ln.strip().lstrip("#").strip() for ln in via.splitlines() if ln.strip().lstrip("#").strip()}


@pytest.mark.parametrize("lock,extras", LOCKS.items())
def test_the_lock_holds_nothing_pyproject_does_not_ask_for(lock, extras):
    """Each entry the project itself asks for ('via slowfast') is still a requirement of
    pyproject.toml: a dependency dropped there is dropped from the lock too."""
    wanted = {canonicalize_name(r.name) for r in _wanted(extras)} | {"torch"}
    text = (REQ / lock).read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==", block)
        if m and any(src.startswith(("slowfast", "-r requirements/")) for src in _sources(block)):
            assert canonicalize_name(m.group(1)) in wanted, f"{lock}: {m.group(1)} is locked but not required"


def test_the_gpu_lock_has_the_cuda_onnxruntime_and_not_the_cpu_one():
    cpu, gpu = _lock("lock.txt"), _lock("lock-gpu.txt")
    assert "onnxruntime" in cpu and "onnxruntime-gpu" not in cpu
    assert "onnxruntime-gpu" in gpu and "onnxruntime" not in gpu
    assert "torch" not in cpu and "torch" in gpu


def test_this_environment_has_exactly_the_locked_versions():
    """What `make setup` installed is the lock, not whatever was newest that day."""
    try:
        md.version("onnxruntime-gpu")
        lock = "lock-gpu.txt"
    except md.PackageNotFoundError:
        lock = "lock.txt"
        # the CPU lock leaves torch out: it is installed first, at the pinned version
        assert Version(md.version("torch")) == _torch_pin("torch-cpu.in"), md.version("torch")
    wrong = []
    for name, entries in _lock(lock).items():
        applicable = [v for v, marker, _ in entries if marker is None or marker.evaluate()]
        if not applicable:
            continue
        try:
            have = Version(md.version(name))
        except md.PackageNotFoundError:
            wrong.append(f"{name}: not installed (lock {applicable[0]})")
            continue
        if have not in applicable:
            wrong.append(f"{name}: {have} installed, lock {applicable[0]}")
    assert not wrong, f"run `make setup` ({lock}): " + "; ".join(wrong)
