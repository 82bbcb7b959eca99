"""The base of every domain error, and the exit codes the commands share."""
from __future__ import annotations

import enum


class EmocacheError(Exception):
    """An error the user can act on: bad input, a refused operation, a store or cluster that cannot be used.

    The message names the file, the utterance or the option, and the fix. The CLIs print it as one
    line (:func:`emocache.cli.domain_errors`); any other exception is a bug and keeps its traceback.
    """


class ExitCode(enum.IntEnum):
    """What a command's exit status means, the same for every command."""

    OK = 0
    #: the operation was refused or could not run (the message says why): ``click.ClickException``'s own code
    ERROR = 1
    #: bad usage (click's own code)
    USAGE = 2
    #: the command ran, but some utterances failed or are missing; what succeeded is kept
    INCOMPLETE = 3
