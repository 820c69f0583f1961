"""Stable import path for backend plugins: re-exports ``r1zero.trainer.launch`` (forming the Ray
cluster for a backend), where the launch code lives in the core."""

from r1zero.trainer.launch import (check_address, check_env_key, cluster_ready,  # noqa: F401
                                   expected_resources, export_lines, head_command, node_script,
                                   per_node, resource_flags, run_with_retries, runtime_env,
                                   start_local, wait_for_cluster, worker_command)
