"""A Ray cluster on one machine whose traffic stays on 127.0.0.1: the nodes run inside a network namespace that has
only ``lo`` (Ray registers nodes under the machine's own address otherwise, even when told 127.0.0.1).  For tests
and benchmarks; needs root and iproute2 (``ip netns``).  Every process in the namespace is killed, and the
namespace removed, on the way out."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator, Optional, Sequence


def available() -> bool:
    """Whether this process can make network namespaces (root and ``ip``)."""
    return shutil.which("ip") is not None and os.geteuid() == 0


@contextlib.contextmanager
def loopback_cluster(cpus_per_node: Sequence[int], *, port: int = 6379, env: Optional[dict] = None,
                     temp_dir: Optional[Path] = None, prefix: str = "hxray") -> Iterator[dict]:
    """A head node and ``len(cpus_per_node) - 1`` worker nodes in a fresh namespace; yields ``{name, address,
    env}`` (``env``: what drivers started with :func:`run_in` get: auth off, usage stats off, ``env`` added)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", **(env or {}))
    ray_bin = str(Path(sys.executable).with_name("ray"))
    address = f"127.0.0.1:{port}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        common = ["--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
        head = ["--head", "--port", str(port), "--include-dashboard=false", *common]
        if temp_dir is not None:
            head += ["--temp-dir", str(temp_dir)]
        for i, cpus in enumerate(cpus_per_node):
            role = head if i == 0 else ["--address", address, *common]
            subprocess.run(["ip", "netns", "exec", name, ray_bin, "start", "--num-cpus", str(cpus), *role],
                           check=True, env=env, capture_output=True, timeout=120)
        yield dict(name=name, address=address, env=env)
    finally:
        for _ in range(3):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
            if not pids:
                break
            subprocess.run(["kill", "-9", *pids], capture_output=True)
            time.sleep(1)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def run_in(cluster: dict, argv: Sequence, *, timeout: float) -> subprocess.CompletedProcess:
    """``python ARGV`` inside the cluster's namespace (a driver that connects to ``cluster["address"]``)."""
    return subprocess.run(["ip", "netns", "exec", cluster["name"], sys.executable, *map(str, argv)],
                          env=cluster["env"], capture_output=True, text=True, timeout=timeout)
