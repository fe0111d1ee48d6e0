"""Do N ROS 2 processes that start together all match each other? A stress test of DDS
discovery alone, for choosing the stack's Fast DDS transports (docs/reactive-runtime.md,
"Two nodes that never matched").

Each start launches N processes within ``--spread`` seconds of each other; each publishes
and subscribes one topic at 10 Hz, and some burn two threads for ``--burn`` seconds after
creating their node (a model's warm-up). After ``--seconds`` each reports which processes it
heard from. The transport settings given are alternated start by start, and Fast DDS's files
in /dev/shm are removed before each start (stop every other ROS 2 process first).

    python scripts/dds_match_stress.py --starts 15 LARGE_DATA 'DEFAULT?sockets_size=4MB'
    python scripts/dds_match_stress.py --starts 12 DEFAULT ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST

A setting is a FASTDDS_BUILTIN_TRANSPORTS value, or NAME=VALUE for another variable
(several joined with '+'). Run it with CPU hogs beside it to load the machine as a robot's
computer is loaded.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys

CHILD = r'''
import json, sys, threading, time
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String

i, delay, burn, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
time.sleep(delay)
rclpy.init()
node = rclpy.create_node(f"stress_{i}")
pub = node.create_publisher(String, "/stress", 10)
heard = set()
node.create_subscription(String, "/stress", lambda m: heard.add(int(m.data)), 10)
ex = SingleThreadedExecutor()
ex.add_node(node)
stop = threading.Event()
spin = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)])
spin.start()

def work():
    end = time.monotonic() + burn
    while time.monotonic() < end:
        pass

for _ in range(2 if burn > 0 else 0):
    threading.Thread(target=work, daemon=True).start()
end = time.monotonic() + seconds
while time.monotonic() < end:
    pub.publish(String(data=str(i)))
    time.sleep(0.1)
print(json.dumps({"i": i, "heard": sorted(heard)}), flush=True)
stop.set()
spin.join()
ex.shutdown()
node.destroy_node()
rclpy.shutdown()
'''


def _env(setting: str, domain: int) -> dict:
    from slowfast_ros.qos import TRANSPORTS_VAR  # noqa: PLC0415

    env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
    for part in setting.split("+"):
        name, _, value = part.partition("=")
        if value and name.isupper() and "?" not in name:
            env[name] = value
        else:
            env[TRANSPORTS_VAR] = part
    return env


def _clean_shm() -> None:
    for f in os.listdir("/dev/shm"):
        if f.startswith(("fastdds_", "sem.fastdds_")):
            try:
                os.unlink(os.path.join("/dev/shm", f))
            except OSError:
                pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("settings", nargs="+", help="transport settings to alternate")
    p.add_argument("--processes", type=int, default=8)
    p.add_argument("--starts", type=int, default=10, help="starts per setting")
    p.add_argument("--seconds", type=float, default=10.0, help="how long each process runs")
    p.add_argument("--spread", type=float, default=2.0, help="processes start within this many seconds")
    p.add_argument("--burn", type=float, default=3.0, help="CPU burn of the busy processes (s)")
    p.add_argument("--domain", type=int, default=90)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    rng = random.Random(a.seed)
    bad = {s: 0 for s in a.settings}
    for k in range(a.starts * len(a.settings)):
        setting = a.settings[k % len(a.settings)]
        _clean_shm()
        env = _env(setting, a.domain + k % 5)
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(i), str(rng.uniform(0, a.spread)),
                                   str(rng.choice([0.0, 0.0, a.burn])), str(a.seconds)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for i in range(a.processes)]
        missing = {}
        for p_ in procs:
            out, err = p_.communicate(timeout=a.seconds + 60)
            try:
                r = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                print(f"a process failed: {err.strip()[-300:]}", file=sys.stderr)
                missing[-1] = ["failed"]
                continue
            gone = sorted(set(range(a.processes)) - set(r["heard"]))
            if gone:
                missing[r["i"]] = gone
        bad[setting] += bool(missing)
        print(f"start {k} [{setting}]: " + (f"never heard (process: missing) {missing}" if missing else "all matched"),
              flush=True)
    print(json.dumps({"starts_per_setting": a.starts, "starts_with_an_unmatched_pair": bad}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
