"""The company's own code: service tasks registered with the engine by name."""
from __future__ import annotations

from typing import Any, Callable

SERVICES: dict[str, Callable[..., Any]] = {}
