"""Recipes: manifests of the public emotion corpora, read exactly as each is distributed.

Each ``parse_NAME(root)`` returns a :class:`RecipeResult`; its ``require_standard()``
checks the corpus against its published counts. Each registers itself
(:func:`registry.register`) as a ``manifests`` command; a new corpus is a module here
whose parse function carries ``@register``, and its import below.
"""
from .common import RecipeResult, StandardCountError
from .cremad import parse_cremad
from .emodb import parse_emodb
from .meld import parse_meld
from .msppodcast import parse_msppodcast
from .ravdess import parse_ravdess
from .registry import RECIPES, ChoiceOption, Recipe, register

__all__ = [
    "RECIPES", "ChoiceOption", "Recipe", "RecipeResult", "StandardCountError",
    "parse_cremad", "parse_emodb", "parse_meld", "parse_msppodcast", "parse_ravdess", "register",
]
