"""Error mapping for the four CLIs: domain errors become one-line messages, bugs keep their traceback."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import click

from emocache.errors import EmocacheError

F = TypeVar("F", bound=Callable)


def domain_errors(fn: F) -> F:
    """Wrap a click command so that an :class:`EmocacheError` exits 1 with its message (``Error: ...``)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EmocacheError as err:
            raise click.ClickException(str(err)) from err

    return wrapper  # type: ignore[return-value]
