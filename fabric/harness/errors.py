"""The config's error type, a leaf every harness module may import (fabric.harness.config
re-exports it; fabric.harness.hosts raises it without importing the config's rules).

Must not live here: anything that reads a config.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A bad config. ``key`` is the dotted key (or file); the message also says what is allowed."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes despite two arguments
        return (ConfigError, (self.key, self.problem))
