"""The plugin machinery: hook specs, the plugin host (entry points, local modules), config-aware
lookups, the backend contract, and the one exception per layer that names what is at fault."""
