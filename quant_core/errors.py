"""The exception hierarchy: one base class whose message is shown to the user as is.

Every error a user can cause (bad files, unsupported models, invalid options) is a
`QuantError`; the CLI turns it into exit code 2 and one `error: ...` line, the web app
into one `st.error` line. Anything else is a bug and surfaces as such.
"""

from __future__ import annotations


class QuantError(Exception):
    """A problem the user can fix; `str(err)` is a one-line, user-facing message."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class InputError(QuantError):
    """A file or option given by the user cannot be used."""


class UnsupportedModelError(InputError):
    """The model is valid but outside what the workbench supports."""


class UnsafeModelError(InputError):
    """The model needs code execution (Lambda layers, custom objects, py_func ops)."""


class ImageError(InputError):
    """No usable images, or labels that do not fit the model."""


class ConversionError(QuantError):
    """A variant could not be produced or failed its check against the source model."""


def first_line(err: BaseException, *, limit: int = 300) -> str:
    """The first non-blank line of an exception's message, at most `limit` characters ('' when blank).

    Third-party engines raise multi-line messages (MLIR dumps, stack excerpts); one line is
    what a user-facing error can carry. Callers add `or type(err).__name__` where needed.
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0][:limit] if lines else ""
