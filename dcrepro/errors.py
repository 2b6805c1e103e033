"""The one way dcrepro says 'no such thing' (imports nothing from dcrepro, so every module can use it)."""
from __future__ import annotations

__all__ = ["UnknownNameError", "choice_error"]


class UnknownNameError(KeyError, ValueError):
    """A user-supplied name (paper, table, data set, reading, method, ...) that does not exist (a KeyError and
    a ValueError, so either handler catches it). The CLI
    prints it as one line and exits 2; any other KeyError is a bug and keeps its traceback."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def choice_error(kind: str, name, valid) -> UnknownNameError:
    """``unknown <kind> 'x'; valid <kind>s: a, b, c``."""
    return UnknownNameError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(map(str, valid))}")
