"""``r1zero`` as a test runs it for the megatron engine on CPU ranks:

    python -m tests.megatron.train_main train CONFIG [--resume] [key=value ...]

The CPU redirections (``cpu_redirect.apply``) are applied in this process first; when the
recipe trains on Ray, a local Ray is started with them as the workers' setup hook, so every
rank applies them before it imports r1zero. Then the CLI runs unchanged. Test fixture only.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from tests.megatron import cpu_redirect

    cpu_redirect.apply()
    if any(a == "ray.enabled=true" for a in argv) or _ray_recipe(argv):
        import ray

        ray.init(num_cpus=2, address="local", include_dashboard=False, logging_level="WARNING",
                 runtime_env={"worker_process_setup_hook":
                              "tests.megatron.cpu_redirect.apply_in_worker"})
    from r1zero.cli.main import main as cli

    return cli(argv)


def _ray_recipe(argv: list[str]) -> bool:
    import yaml

    path = next((a for a in argv[1:] if a.endswith((".yaml", ".yml"))), None)
    if path is None:
        return False
    with open(path, encoding="utf-8") as fh:
        recipe = yaml.safe_load(fh) or {}
    return bool((recipe.get("ray") or {}).get("enabled"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
