"""Built-in RL algorithms (``builtin``), registered through ``register_algorithms``."""
