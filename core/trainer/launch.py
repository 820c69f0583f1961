"""Forming the Ray cluster for a backend, as MindSpeed-RL's launch script does.

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
import re
import shlex
import subprocess
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from r1zero.host.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

DEFAULT_PORT = 6766          # MindSpeed-RL's script; its manual variant uses 6344
DASHBOARD_PORT = 8260
# Exported by the launch script on every node, beside the backend's own variables.
LAUNCH_ENV = {"RAY_DEDUP_LOGS": "0"}


def per_node(backend: Any, cfg: RecipeConfig) -> int:
    return cfg.backend.devices_per_node or backend.devices_per_node


def resource_flags(backend: Any, cfg: RecipeConfig) -> list[str]:
    """How a node declares its devices: ``--num-gpus`` / ``--num-cpus`` for the resources Ray
    knows by flag, ``--resources={"NPU": 16}`` for any other name."""
    n, res = per_node(backend, cfg), backend.ray_resource
    if res == "GPU":
        return [f"--num-gpus={n}"]
    if res == "CPU":
        return [f"--num-cpus={cfg.ray.num_cpus}"] if cfg.ray.num_cpus else []
    return ["--resources=" + json.dumps({res: n})]


def head_command(backend: Any, cfg: RecipeConfig, *, master_addr: str, node_ip: str | None = None,
                 port: int = DEFAULT_PORT, dashboard_port: int = DASHBOARD_PORT) -> list[str]:
    return ["ray", "start", "--head", f"--port={port}", f"--dashboard-host={master_addr}",
            f"--node-ip-address={node_ip or master_addr}", f"--dashboard-port={dashboard_port}",
            *resource_flags(backend, cfg)]


def worker_command(backend: Any, cfg: RecipeConfig, *, master_addr: str, node_ip: str | None = None,
                   port: int = DEFAULT_PORT) -> list[str]:
    cmd = ["ray", "start", f"--address={master_addr}:{port}"]
    if node_ip:
        cmd.append(f"--node-ip-address={node_ip}")
    return cmd + resource_flags(backend, cfg)


def expected_resources(backend: Any, cfg: RecipeConfig) -> dict[str, float]:
    """What the whole cluster must report before training starts, e.g. {"NPU": 384}."""
    return {backend.ray_resource: float(cfg.backend.num_nodes * per_node(backend, cfg))}


def cluster_ready(resources: Mapping[str, float], expected: Mapping[str, float]) -> tuple[bool, str]:
    """Compare ``ray.cluster_resources()`` with ``expected``; the text says what is missing."""
    short = {k: (resources.get(k, 0.0), v) for k, v in expected.items() if resources.get(k, 0.0) < v}
    if not short:
        return True, "all " + ", ".join(f"{v:g} {k}" for k, v in expected.items()) + " registered"
    return False, "; ".join(f"{k}: {have:g} of {want:g} registered" for k, (have, want) in short.items())


def runtime_env(backend: Any, cfg: RecipeConfig) -> dict[str, Any]:
    """Ray ``runtime_env`` for workers: the backend's env vars, then ``ray.runtime_env``
    (whose own ``env_vars`` win key by key)."""
    extra = dict(cfg.ray.runtime_env)
    env = {**backend.env_vars(cfg), **{k: str(v) for k, v in extra.pop("env_vars", {}).items()}}
    return {**extra, "env_vars": env}


def export_lines(env: Mapping[str, str]) -> list[str]:
    """``export K=V`` lines; every value is shell-quoted and a key that is not a shell
    identifier is refused (it would be run as code)."""
    for key in env:
        check_env_key(key, "backend.env")
    return [f"export {k}={shlex.quote(str(v))}" for k, v in env.items()]


_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST = re.compile(r"[A-Za-z0-9_.:\-\[\]%]+")


def check_env_key(key: Any, where: str) -> None:
    if not isinstance(key, str) or not _ENV_KEY.fullmatch(key):
        raise ConfigError(f"environment variable name {key!r} is not a shell identifier "
                          "(letters, digits, '_'; not starting with a digit)", key=where)


def check_address(master_addr: str, port: int) -> None:
    """A host name or IP address and a TCP port, refused otherwise (they go into the script)."""
    if not _HOST.fullmatch(master_addr or "") or master_addr.startswith("-"):
        raise ConfigError(f"{master_addr!r} is not a host name or IP address", key="--master-addr")
    if not 1 <= port <= 65535:
        raise ConfigError(f"port {port} is outside 1..65535", key="--port")


def node_script(backend: Any, cfg: RecipeConfig, config_path: str, *, master_addr: str,
                port: int = DEFAULT_PORT, wait_timeout_s: int = 1800,
                overrides: Sequence[str] = ()) -> str:
    """The bash script every node runs. The node whose IP is ``master_addr`` is the head.

    CURRENT_IP may be set by the caller (e.g. from the NIC in HCCL_SOCKET_IFNAME); otherwise the
    first address of ``hostname -I``.
    """
    check_address(master_addr, port)
    expected = expected_resources(backend, cfg)
    head = _bash(head_command(backend, cfg, master_addr=master_addr, node_ip=_IP, port=port))
    worker = _bash(worker_command(backend, cfg, master_addr=master_addr, node_ip=_IP, port=port))
    train = shlex.join(["r1zero", "train", config_path, *overrides])
    wait = (f"from r1zero.trainer.launch import wait_for_cluster; "
            f"wait_for_cluster({json.dumps(expected)}, timeout_s={wait_timeout_s})")
    lines = [
        "#!/usr/bin/env bash",
        f"# r1zero cluster launch: backend {_comment(backend.name)}, {cfg.backend.num_nodes} nodes "
        f"x {per_node(backend, cfg)} {_comment(backend.ray_resource)}. Run on every node; same "
        "paths everywhere.",
        "set -euo pipefail",
        *export_lines({**backend.env_vars(cfg), **LAUNCH_ENV}),
        "# site-specific, from MindSpeed-RL's script: jemalloc LD_PRELOAD, HCCL_IF_BASE_PORT",
        f"MASTER_ADDR={shlex.quote(master_addr)}",
        'CURRENT_IP="${CURRENT_IP:-$(hostname -I | awk \'{print $1}\')}"',
        'if [ "$CURRENT_IP" = "$MASTER_ADDR" ]; then',
        "  " + head,
        f"  python -c {shlex.quote(wait)}",
        f"  {train}",
        "else",
        f"  until {worker}; do",
        '    echo "waiting for the Ray head at $MASTER_ADDR"; sleep 5',
        "  done",
        "fi",
    ]
    return "\n".join(lines) + "\n"


_IP = "\0CURRENT_IP\0"       # stands for the node's own address until the script is quoted


def _bash(argv: Sequence[str]) -> str:
    """``argv`` as one bash command line: every word quoted, except the node-ip placeholder,
    which becomes ``"$CURRENT_IP"`` (expanded by bash on each node)."""
    flag = "--node-ip-address="
    return " ".join(flag + '"$CURRENT_IP"' if a == flag + _IP else shlex.quote(a) for a in argv)


def _comment(text: Any) -> str:
    return json.dumps(str(text), ensure_ascii=True)[1:-1]    # one line, whatever it holds


def wait_for_cluster(expected: Mapping[str, float], timeout_s: float = 1800,
                     poll_s: float = 5.0, address: str = "auto") -> str:
    """Connect to the running cluster and poll until ``expected`` resources are registered."""
    import ray


    ray.init(address=address, ignore_reinit_error=True, logging_level="WARNING")
    deadline = time.monotonic() + timeout_s
    while True:
        ok, text = cluster_ready(ray.cluster_resources(), expected)
        if ok:
            return text
        if time.monotonic() > deadline:
            raise BackendUnavailable("ray", f"cluster not complete after {timeout_s:g} s: {text}")
        time.sleep(poll_s)


def start_local(backend: Any, cfg: RecipeConfig, num_cpus: int | None = None) -> dict[str, float]:
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
