"""Ray cluster commands per backend (as MindSpeed-RL's launch script forms the cluster), the
node script checked by real bash, a real local Ray start with the backend's resource and runtime env, and retries on real processes."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from r1zero.config.load import load_config
from r1zero.trainer.launch import (cluster_ready, expected_resources, export_lines, head_command,
                           node_script, run_with_retries, runtime_env, start_local, worker_command)
from r1zero.host.manager import PluginHost

RECIPE = Path(__file__).resolve().parents[2] / "examples" / "r1_zero_deepseek_671b.yaml"


@pytest.fixture(scope="module")
def host():
    return PluginHost().load()


@pytest.fixture(scope="module")
def seed_cfg():
    return load_config(RECIPE)


def test_head_and_worker_commands_for_ascend(host, seed_cfg):
    a3 = host.get("backends", "ascend_a3")
    assert head_command(a3, seed_cfg, master_addr="10.0.0.1", node_ip="10.0.0.1") == [
        "ray", "start", "--head", "--port=6766", "--dashboard-host=10.0.0.1",
        "--node-ip-address=10.0.0.1", "--dashboard-port=8260", '--resources={"NPU": 16}']
    assert worker_command(a3, seed_cfg, master_addr="10.0.0.1", port=6344) == [
        "ray", "start", "--address=10.0.0.1:6344", '--resources={"NPU": 16}']


def test_gpu_and_cpu_nodes_declare_devices_by_flag(host):
    cfg = load_config(None, ["backend.name=cuda", "backend.devices_per_node=8", "ray.num_cpus=4"])
    assert head_command(host.get("backends", "cuda"), cfg, master_addr="h")[-1] == "--num-gpus=8"
    assert worker_command(host.get("backends", "cpu"), cfg, master_addr="h") == [
        "ray", "start", "--address=h:6766", "--num-cpus=4"]


def test_cluster_ready_counts_the_seed_dies(host, seed_cfg):
    want = expected_resources(host.get("backends", "ascend_a3"), seed_cfg)
    assert want == {"NPU": 384.0}                                 # 24 nodes x 16
    assert cluster_ready({"NPU": 368.0, "CPU": 4000.0}, want) == (False, "NPU: 368 of 384 registered")
    assert cluster_ready({"CPU": 1.0}, want) == (False, "NPU: 0 of 384 registered")
    assert cluster_ready({"NPU": 384.0}, want) == (True, "all 384 NPU registered")


def test_runtime_env_merges_backend_and_config(host):
    cfg = load_config(RECIPE, ["ray.runtime_env={env_vars: {HCCL_BUFFSIZE: '512'}, working_dir: /code}"])
    env = runtime_env(host.get("backends", "ascend_a3"), cfg)
    assert env["working_dir"] == "/code"
    assert env["env_vars"]["HCCL_BUFFSIZE"] == "512"              # ray.runtime_env wins
    assert env["env_vars"]["VLLM_DP_SIZE"] == "64"


def test_export_lines_survive_bash_quoting():
    lines = export_lines({"A": "x y", "B": "it's", "C": '{"NPU": 16}'})
    out = subprocess.run(["bash", "-c", "; ".join(lines) + '; printf "%s|%s|%s" "$A" "$B" "$C"'],
                         capture_output=True, text=True, check=True).stdout
    assert out == 'x y|it\'s|{"NPU": 16}'


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_node_script_is_valid_bash_with_both_roles(host, seed_cfg, tmp_path):
    a3 = host.get("backends", "ascend_a3")
    text = node_script(a3, seed_cfg, "examples/r1_zero_deepseek_671b.yaml",
                       master_addr="10.0.0.1", overrides=["actor.lr=2e-6"])
    path = tmp_path / "node.sh"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    assert "export HCCL_CONNECT_TIMEOUT=1800\n" in text and "export RAY_DEDUP_LOGS=0\n" in text
    assert ("ray start --head --port=6766 --dashboard-host=10.0.0.1 "
            "--node-ip-address=\"$CURRENT_IP\" --dashboard-port=8260 '--resources={\"NPU\": 16}'") in text
    assert "until ray start --address=10.0.0.1:6766" in text
    assert 'wait_for_cluster({"NPU": 384.0}, timeout_s=1800)' in text
    assert "r1zero train examples/r1_zero_deepseek_671b.yaml actor.lr=2e-6" in text


def test_run_with_retries_on_real_processes(tmp_path):
    fail = [sys.executable, "-c", "import sys; sys.exit(3)"]
    assert run_with_retries(fail, retries=1, delay_s=0) == 3
    counter = tmp_path / "n"
    # fails on the first call, succeeds on the second: the worker's join loop
    flaky = [sys.executable, "-c",
             f"import pathlib,sys; p=pathlib.Path({str(counter)!r}); n=int(p.read_text() or 0) "
             f"if p.exists() else 0; p.write_text(str(n+1)); sys.exit(0 if n else 1)"]
    assert run_with_retries(flaky, retries=3, delay_s=0) == 0
    assert counter.read_text() == "2"


def test_start_local_declares_npus_and_ships_the_env(host, seed_cfg):
    ray = pytest.importorskip("ray")
    a3 = host.get("backends", "ascend_a3")
    cfg = load_config(RECIPE, ["backend.num_nodes=1", "backend.devices_per_node=2"])
    try:
        resources = start_local(a3, cfg, num_cpus=1)
        assert resources["NPU"] == 2.0 and resources["CPU"] == 1.0

        @ray.remote(num_cpus=0, resources={"NPU": 1})
        def worker_env():
            import os
            return {k: os.environ.get(k) for k in ("HCCL_CONNECT_TIMEOUT", "VLLM_DP_SIZE")}

        assert ray.get(worker_env.remote(), timeout=120) == {
            "HCCL_CONNECT_TIMEOUT": "1800", "VLLM_DP_SIZE": "64"}
    finally:
        ray.shutdown()
