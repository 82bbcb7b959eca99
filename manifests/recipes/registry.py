"""The registry of corpus recipes: each one becomes a ``manifests NAME`` command.

A new corpus is one module in this package whose parse function carries :func:`register`,
imported in ``manifests/recipes/__init__.py``; ``manifests/cli.py`` builds its command (ROOT,
--out, --expect-standard, --json, and the recipe's own choices) from the registration.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from .common import RecipeResult

Parse = Callable[..., RecipeResult]


@dataclass(frozen=True)
class ChoiceOption:
    """An option of one recipe beyond the shared ones: ``--NAME`` (underscores as dashes), one of ``choices``.

    Its value reaches the parse function as the keyword argument ``name``, whose default there is
    the option's default."""

    name: str
    choices: tuple[str, ...]
    help: str


@dataclass(frozen=True)
class Recipe:
    """A registered recipe: the command ``name``, its parse function, its help text and its own options."""

    name: str
    parse: Parse
    help: str
    options: tuple[ChoiceOption, ...] = ()

    def default(self, option: ChoiceOption) -> str:
        return inspect.signature(self.parse).parameters[option.name].default


RECIPES: dict[str, Recipe] = {}


def register(name: str, help: str, options: tuple[ChoiceOption, ...] = ()) -> Callable[[Parse], Parse]:
    """Decorate a recipe's parse function (``parse(root, **options) -> RecipeResult``) to make it ``manifests NAME``.

    ``help`` is the command's help text: its first line is the summary ``manifests --help`` lists."""

    def add(parse: Parse) -> Parse:
        if name in RECIPES:
            raise ValueError(f"two recipes are registered as {name!r}: {RECIPES[name].parse.__module__} and {parse.__module__}")
        parameters = inspect.signature(parse).parameters
        for option in options:
            if option.name not in parameters or parameters[option.name].default is inspect.Parameter.empty:
                raise ValueError(f"recipe {name!r}: {parse.__qualname__} has no keyword argument {option.name!r} with a default")
        RECIPES[name] = Recipe(name, parse, help, tuple(options))
        return parse

    return add
