"""Forming the Ray cluster for a backend, as MindSpeed-RL's launch script does (REFERENCE.md §6).

Command building is pure: ``head_command`` / ``worker_command`` return the ``ray start`` argv,
``node_script`` the bash script that every node runs (the head starts Ray, waits until
nodes x devices are registered, then runs ``r1zero train``; the others retry joining):

    ray start --head --port=6766 --dashboard-host=$MASTER_ADDR --node-ip-address=$CURRENT_IP \\
        --dashboard-port=8260 '--resources={"NPU": 16}'
    ray start --address=$MASTER_ADDR:6766 '--resources={"NPU": 16}'

``start_local`` starts a one-machine Ray with the backend's resource and runtime env (used
when ``ray.address`` is None); ``wait_for_cluster`` polls a running cluster's resources.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from typing import Any, Mapping, Sequence

DEFAULT_PORT = 6766          # MindSpeed-RL's script; its manual variant uses 6344
DASHBOARD_PORT = 8260
# Exported by the launch script on every node, beside the backend's own variables.
LAUNCH_ENV = {"RAY_DEDUP_LOGS": "0"}


def per_node(backend: Any, cfg: Any) -> int:
    return cfg.backend.devices_per_node or backend.devices_per_node


def resource_flags(backend: Any, cfg: Any) -> list[str]:
    """How a node declares its devices: ``--num-gpus`` / ``--num-cpus`` for the resources Ray
    knows by flag, ``--resources={"NPU": 16}`` for any other name."""
    n, res = per_node(backend, cfg), backend.ray_resource
    if res == "GPU":
        return [f"--num-gpus={n}"]
    if res == "CPU":
        return [f"--num-cpus={cfg.ray.num_cpus}"] if cfg.ray.num_cpus else []
    return ["--resources=" + json.dumps({res: n})]


def head_command(backend: Any, cfg: Any, *, master_addr: str, node_ip: str | None = None,
                 port: int = DEFAULT_PORT, dashboard_port: int = DASHBOARD_PORT) -> list[str]:
    return ["ray", "start", "--head", f"--port={port}", f"--dashboard-host={master_addr}",
            f"--node-ip-address={node_ip or master_addr}", f"--dashboard-port={dashboard_port}",
            *resource_flags(backend, cfg)]


def worker_command(backend: Any, cfg: Any, *, master_addr: str, node_ip: str | None = None,
                   port: int = DEFAULT_PORT) -> list[str]:
    cmd = ["ray", "start", f"--address={master_addr}:{port}"]
    if node_ip:
        cmd.append(f"--node-ip-address={node_ip}")
    return cmd + resource_flags(backend, cfg)


def expected_resources(backend: Any, cfg: Any) -> dict[str, float]:
    """What the whole cluster must report before training starts, e.g. {"NPU": 384}."""
    return {backend.ray_resource: float(cfg.backend.num_nodes * per_node(backend, cfg))}


def cluster_ready(resources: Mapping[str, float], expected: Mapping[str, float]) -> tuple[bool, str]:
    """Compare ``ray.cluster_resources()`` with ``expected``; the text says what is missing."""
    short = {k: (resources.get(k, 0.0), v) for k, v in expected.items() if resources.get(k, 0.0) < v}
    if not short:
        return True, "all " + ", ".join(f"{v:g} {k}" for k, v in expected.items()) + " registered"
    return False, "; ".join(f"{k}: {have:g} of {want:g} registered" for k, (have, want) in short.items())


def runtime_env(backend: Any, cfg: Any) -> dict[str, Any]:
    """Ray ``runtime_env`` for workers: the backend's env vars, then ``ray.runtime_env``
    (whose own ``env_vars`` win key by key)."""
    extra = dict(cfg.ray.runtime_env)
    env = {**backend.env_vars(cfg), **{k: str(v) for k, v in extra.pop("env_vars", {}).items()}}
    return {**extra, "env_vars": env}


def export_lines(env: Mapping[str, str]) -> list[str]:
    return [f"export {k}={shlex.quote(str(v))}" for k, v in env.items()]


def node_script(backend: Any, cfg: Any, config_path: str, *, master_addr: str,
                port: int = DEFAULT_PORT, wait_timeout_s: int = 1800,
                overrides: Sequence[str] = ()) -> str:
    """The bash script every node runs. The node whose IP is ``master_addr`` is the head.

    CURRENT_IP may be set by the caller (e.g. from the NIC in HCCL_SOCKET_IFNAME); otherwise the
    first address of ``hostname -I``.
    """
    expected = expected_resources(backend, cfg)
    ip = '"$CURRENT_IP"'      # shlex leaves the placeholder bare; bash expands it per node
    head = shlex.join(head_command(backend, cfg, master_addr=master_addr, node_ip="IP_", port=port))
    worker = shlex.join(worker_command(backend, cfg, master_addr=master_addr, node_ip="IP_", port=port))
    train = shlex.join(["r1zero", "train", config_path, *overrides])
    wait = (f"from r1zero.plugins.backends.launch import wait_for_cluster; "
            f"wait_for_cluster({json.dumps(expected)}, timeout_s={wait_timeout_s})")
    lines = [
        "#!/usr/bin/env bash",
        f"# r1zero cluster launch: backend {backend.name}, {cfg.backend.num_nodes} nodes x "
        f"{per_node(backend, cfg)} {backend.ray_resource}. Run on every node; same paths everywhere.",
        "set -euo pipefail",
        *export_lines({**backend.env_vars(cfg), **LAUNCH_ENV}),
        "# site-specific, from MindSpeed-RL's script: jemalloc LD_PRELOAD, HCCL_IF_BASE_PORT",
        f"MASTER_ADDR={shlex.quote(master_addr)}",
        'CURRENT_IP="${CURRENT_IP:-$(hostname -I | awk \'{print $1}\')}"',
        'if [ "$CURRENT_IP" = "$MASTER_ADDR" ]; then',
        "  " + head.replace("=IP_", "=" + ip),
        f"  python -c {shlex.quote(wait)}",
        f"  {train}",
        "else",
        f"  until {worker.replace('=IP_', '=' + ip)}; do",
        '    echo "waiting for the Ray head at $MASTER_ADDR"; sleep 5',
        "  done",
        "fi",
    ]
    return "\n".join(lines) + "\n"


def wait_for_cluster(expected: Mapping[str, float], timeout_s: float = 1800,
                     poll_s: float = 5.0, address: str = "auto") -> str:
    """Connect to the running cluster and poll until ``expected`` resources are registered."""
    import ray

    from r1zero.host.errors import BackendUnavailable

    ray.init(address=address, ignore_reinit_error=True, logging_level="WARNING")
    deadline = time.monotonic() + timeout_s
    while True:
        ok, text = cluster_ready(ray.cluster_resources(), expected)
        if ok:
            return text
        if time.monotonic() > deadline:
            raise BackendUnavailable("ray", f"cluster not complete after {timeout_s:g} s: {text}")
        time.sleep(poll_s)


def start_local(backend: Any, cfg: Any, num_cpus: int | None = None) -> dict[str, float]:
    """Start a one-machine Ray declaring this node's devices under the backend's resource name,
    with the backend's runtime env. Returns ``ray.cluster_resources()``."""
    import ray

    res = backend.ray_resource
    n = per_node(backend, cfg)
    kwargs: dict[str, Any] = {"num_cpus": num_cpus or cfg.ray.num_cpus,
                              "runtime_env": runtime_env(backend, cfg),
                              "include_dashboard": False, "logging_level": "WARNING"}
    if res == "GPU":
        kwargs["num_gpus"] = n
    elif res != "CPU":
        kwargs["resources"] = {res: n}
    ray.init(address="local", **kwargs)   # never attach to a cluster found on this machine
    return ray.cluster_resources()


def run_with_retries(cmd: Sequence[str], retries: int = 0, delay_s: float = 5.0) -> int:
    """Run ``cmd`` (e.g. a worker's ``ray start --address``) until it exits 0, at most
    ``retries`` more times; returns the last exit status."""
    for attempt in range(retries + 1):
        rc = subprocess.run(list(cmd), check=False).returncode
        if rc == 0 or attempt == retries:
            return rc
        time.sleep(delay_s)
    return rc
