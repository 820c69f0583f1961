"""Item 3: nothing in a config, a path, an override or an address runs as shell code in the
script ``r1zero launch`` writes; env keys must be identifiers, every value is quoted.

The script runs under the real bash; ``ray``, ``python`` and ``r1zero`` are small programs on
PATH that record the argv they were given, so the test sees exactly what bash passed on.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from r1zero.config.load import load_config
from r1zero.host.errors import ConfigError
from r1zero.host.manager import PluginHost
from r1zero.trainer.launch import export_lines, node_script
from tests.security.conftest import assert_user_error, main_

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
EVIL = ["$(touch {m})", "`touch {m}`", "'; touch {m}; '", '"; touch {m}; "', "x\ntouch {m}",
        "a b & touch {m}"]


@pytest.fixture(scope="module")
def cpu():
    return PluginHost().get("backends", "cpu")


def _recorders(bin_dir, log):
    bin_dir.mkdir()
    for name in ("ray", "python", "r1zero"):
        exe = bin_dir / name
        exe.write_text(f'#!/bin/bash\nprintf "%s\\0" {name} "$@" >> {log}\nprintf "\\n" >> {log}\n')
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def _run_script(text, tmp_path, env_ip):
    log = tmp_path / "argv.log"
    _recorders(tmp_path / "bin", log)
    script = tmp_path / "node.sh"
    script.write_text(text)
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "CURRENT_IP": env_ip}
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    calls = [line.split("\0") for line in log.read_text().split("\0\n") if line]
    return calls


@pytest.mark.parametrize("evil", EVIL)
def test_hostile_values_paths_and_overrides_stay_data(cpu, tmp_path, evil):
    marker = tmp_path / "pwned"
    bad = evil.format(m=marker)
    cfg = load_config(None, base={"backend": {"env": {"OTHER": bad, "MY_VAR": bad}}})
    cfg_path = f"conf {bad}.yaml"
    text = node_script(cpu, cfg, cfg_path, master_addr="10.0.0.1", overrides=[f"name={bad}"])
    calls = _run_script(text + 'printf "%s" "$OTHER" > other.txt\n', tmp_path, "10.0.0.1")
    assert not marker.exists()
    assert (tmp_path / "other.txt").read_text() == bad
    assert calls[0][:3] == ["ray", "start", "--head"] and "--node-ip-address=10.0.0.1" in calls[0]
    assert calls[-1] == ["r1zero", "train", cfg_path, f"name={bad}"]


def test_worker_role_gets_the_address_verbatim(cpu, tmp_path):
    cfg = load_config(None, [])
    text = node_script(cpu, cfg, "c.yaml", master_addr="head-1.cluster.local", port=7000)
    calls = _run_script(text, tmp_path, "10.9.9.9")
    assert calls == [["ray", "start", "--address=head-1.cluster.local:7000",
                      "--node-ip-address=10.9.9.9"]]


@pytest.mark.parametrize("key", ["X;touch /tmp/p;Y", "A B", "1A", "A=B", "$(id)", "", "A-B"])
def test_hostile_env_keys_are_refused_at_load_and_in_the_script(cpu, key):
    with pytest.raises(ConfigError, match="not a shell identifier"):
        load_config(None, base={"backend": {"env": {key: "1"}}})
    with pytest.raises(ConfigError, match="not a shell identifier"):
        export_lines({key: "1"})


@pytest.mark.parametrize("addr", ["10.0.0.1;touch /tmp/p", "$(id)", "-h", "a b", ""])
def test_hostile_master_addresses_are_refused(cpu, addr):
    with pytest.raises(ConfigError, match="not a host name or IP address"):
        node_script(cpu, load_config(None, []), "c.yaml", master_addr=addr)


@pytest.mark.parametrize("port", ["-5", "0", "70000"])
def test_launch_port_out_of_range_is_a_user_error(tmp_path, capsys, port):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\n")
    proc = main_(capsys, "launch", str(cfg), "--master-addr", "10.0.0.1", "--port", port)
    assert_user_error(proc, "--port", "outside 1..65535")


def test_launch_output_that_is_a_directory_is_a_user_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\n")
    proc = main_(capsys, "launch", str(cfg), "--master-addr", "10.0.0.1", "--output", str(tmp_path))
    assert_user_error(proc, str(tmp_path), "--output", "cannot write")
    assert os.listdir(tmp_path) == ["c.yaml"]
