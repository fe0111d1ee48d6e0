"""ament_python build of slowfast_ros (colcon). The learning and sim code it runs (policy,
sim, teleop_tactar) installs from the repository root with `pip install .`; see README."""
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "slowfast_ros"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

# One console script per node module: `ros2 run slowfast_ros sim_node`.
NODES = sorted(p.stem for p in (HERE / PACKAGE / "nodes").glob("*.py") if p.stem != "__init__")


def rel(pattern: str) -> list[str]:
    return [str(Path(p).relative_to(HERE)) if Path(p).is_relative_to(HERE) else p
            for p in sorted(glob(str(pattern)))]


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={PACKAGE: ["*.xml"]},     # fastdds_localhost.xml (slowfast_ros.qos)
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/config", rel(HERE / PACKAGE / "config" / "*.yaml")),
        (f"share/{PACKAGE}/launch", rel(REPO / "launch" / "*.launch.py")),
        (f"share/{PACKAGE}/launch/profiles", rel(HERE / PACKAGE / "profiles" / "*.yaml")),
        (f"share/{PACKAGE}/gazebo", rel(REPO / "gazebo" / "*")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="slowfast maintainers",
    maintainer_email="maintainers@slowfast.invalid",
    description="slowfast ROS 2 nodes",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        # The `slowfast` command is the application package slowfast_app (pyproject.toml at the
        # repository root, `pip install .`), not part of this ROS package.
        "console_scripts": [f"{n} = {PACKAGE}.nodes.{n}:main" for n in NODES],
    },
)
