"""One exception per layer; each carries the file, row, key or plugin at fault."""

from __future__ import annotations


class R1ZeroError(Exception):
    """Base class of every error r1zero raises on purpose."""


class ConfigError(R1ZeroError):
    def __init__(self, message: str, *, path: str | None = None, key: str | None = None):
        self.path, self.key, self.message = path, key, message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.path, self.key) if p)
        return f"{where}: {self.message}" if where else self.message


class DatasetError(R1ZeroError):
    def __init__(self, message: str, *, path: str | None = None, row: int | None = None,
                 field: str | None = None):
        self.path, self.row, self.field, self.message = path, row, field, message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or "<records>"
        if self.row is not None:
            where += f" row {self.row}"
        return f"{where}: {self.message}"


class PluginError(R1ZeroError):
    def __init__(self, message: str, *, plugin: str | None = None):
        self.plugin, self.message = plugin, message
        super().__init__(message)


class BackendUnavailable(R1ZeroError):
    def __init__(self, backend: str, reason: str):
        self.backend, self.reason = backend, reason
        super().__init__(f"backend {backend!r} unavailable: {reason}")


class CheckpointError(R1ZeroError):
    """A checkpoint that is missing, damaged or unsafe to load (names the file)."""

    def __init__(self, message: str, *, path: str | None = None):
        self.path, self.message = path, message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class TrainingError(R1ZeroError):
    """A run that cannot go on: non-finite loss or weights, a locked run directory ..."""


class ScoringError(R1ZeroError):
    """A scorer returned something that is not a reward (names the scorer)."""


def short_repr(value: object, limit: int) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting bad input in a message (repr
    escapes control characters, so the quote stays on one line)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
