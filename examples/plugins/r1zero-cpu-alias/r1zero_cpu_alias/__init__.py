"""r1zero backend plugin ``cpu_alias``: the built-in ``cpu`` backend under another name, whose
Ray workers ask for the custom resource ``r1zero_cpu`` instead of Ray's ``CPU``.

A custom resource lets a cluster reserve some nodes (or some slots of a node) for training
workers: ``ray start --resources='{"r1zero_cpu": 1}'`` on those nodes only. Everything else
(torch on CPU, gloo, the engines, layout rules) is inherited from the built-in backend.
"""

from __future__ import annotations

from r1zero.hookspecs import hookimpl
from r1zero.plugins.backends.cpu import CPUBackend

RESOURCE = "r1zero_cpu"


class CPUAliasBackend(CPUBackend):
    name = "cpu_alias"
    ray_resource = RESOURCE


@hookimpl
def register_backends(register):
    register(CPUAliasBackend())
