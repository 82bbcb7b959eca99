"""Every command and option of every console script has help text, and every command answers --help."""
from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    yield prefix, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))
        else:
            yield prefix + (name,), command


def _all_commands():
    for script, target in sorted(SCRIPTS.items()):
        module, attr = target.split(":")
        group = getattr(importlib.import_module(module), attr)
        for path, command in _commands(group):
            yield pytest.param(group, path, command, id=" ".join((script,) + path))


@pytest.mark.parametrize("group, path, command", list(_all_commands()))
def test_every_command_has_help(group, path, command):
    assert (command.help or "").strip(), f"{' '.join(path) or 'group'} has no help text"
    result = CliRunner().invoke(group, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert command.help.strip().splitlines()[0] in result.output


@pytest.mark.parametrize("group, path, command", list(_all_commands()))
def test_every_option_has_help(group, path, command):
    bare = [p.opts[0] for p in command.params if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert bare == [], f"{' '.join(path) or 'group'}: options without help text"
