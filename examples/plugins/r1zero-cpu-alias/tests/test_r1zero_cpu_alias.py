"""Run after `pip install -e .`:  python -m pytest -q"""

import pytest

from r1zero.config import RecipeConfig
from r1zero.config_load import load_config
from r1zero.trainer.launch import expected_resources, resource_flags
from r1zero.manager import PluginHost
from r1zero.registry import get_backend


@pytest.fixture
def host():
    return PluginHost().load()


def test_registered_by_the_installed_distribution(host):
    (reg,) = [r for r in host.items("backends") if r.name == "cpu_alias"]
    assert reg.plugin.distribution == "r1zero-cpu-alias" and reg.plugin.error is None


def test_same_cpu_backend_other_name_and_resource(host):
    alias, cpu = get_backend("cpu_alias", host=host), get_backend("cpu", host=host)
    assert (alias.device, alias.collective) == (cpu.device, cpu.collective) == ("cpu", "gloo")
    assert alias.ray_resource == "r1zero_cpu" and cpu.ray_resource == "CPU"
    assert alias.is_available() == (True, "torch on CPU")


def test_ray_asks_for_the_custom_resource(host):
    alias = get_backend("cpu_alias", host=host)
    cfg = RecipeConfig()
    assert resource_flags(alias, cfg) == ['--resources={"r1zero_cpu": 1}']
    assert expected_resources(alias, cfg) == {"r1zero_cpu": 1.0}


def test_layout_rules_are_inherited(host, tmp_path):
    alias = get_backend("cpu_alias", host=host)
    path = tmp_path / "recipe.yaml"
    path.write_text("backend: {name: cpu_alias}\nactor: {tensor_parallel: 2}\n")
    with pytest.raises(Exception, match=r"tensor_parallel 2 .* does not divide the 1 devices"):
        alias.validate_layout(load_config(str(path)))
