"""Counting XLA compilations through JAX's public monitoring events, not private caches."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import jax

# JAX records this event, with the function's name, for every program it compiles.
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextmanager
def count_compilations() -> Iterator[list[str]]:
    """Yield a list that receives the name of every function compiled inside the block."""
    names: list[str] = []

    def on_event(event: str, duration: float, **kwargs: object) -> None:
        if event == BACKEND_COMPILE_EVENT:
            names.append(str(kwargs.get("fun_name")))

    jax.monitoring.register_event_duration_secs_listener(on_event)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(on_event)
