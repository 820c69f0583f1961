"""The megatron-core train engine (``actor.engine: megatron``): model building, HF <-> mcore
weights, and the engine itself. Imports megatron-core lazily, inside functions."""
