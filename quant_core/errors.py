"""The exception hierarchy: one base class whose message is shown to the user as is.

Every error a user can cause (bad files, unsupported models, invalid options) is a
`QuantError`; the CLI turns it into exit code 2 and one `error: ...` line, the web app
into one `st.error` line. Anything else is a bug: it is logged with its traceback under an
incident id (`report_internal`) and shown as `InternalError` ("internal error, logged as
<id>"), never dressed up as a user error.
"""

from __future__ import annotations

import enum
import logging
import secrets
import traceback
from typing import TypeVar

INCIDENTS = logging.getLogger("quant_core.incidents")  # one record per internal error, with its traceback


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


Choice = TypeVar("Choice", bound=enum.Enum)


def parse_choice(kind: type[Choice], value: Choice | str, what: str) -> Choice:
    """The member of an enum named by `value` (a member is returned as is).

    The one coercion of user-given names (CLI, links, recipe files, API strings) into the
    typed options, with one error for all of them.

    Raises:
        InputError: "unknown <what> '<value>'; expected one of: <every valid name>".
    """
    if isinstance(value, kind):
        return value
    try:
        return kind(value.strip() if isinstance(value, str) else value)
    except ValueError:
        valid = ", ".join(str(k.value) for k in kind)
        raise InputError(f"unknown {what} {value!r}; expected one of: {valid}") from None


class ConversionError(QuantError):
    """A variant could not be produced or failed its check against the source model."""


class Cancelled(QuantError):
    """The request was superseded by a newer one (or its caller went away) and stopped its work."""


def first_line(err: BaseException, *, limit: int = 300) -> str:
    """The first non-blank line of an exception's message, at most `limit` characters ('' when blank).

    Third-party backends raise multi-line messages (MLIR dumps, stack excerpts); one line is
    what a user-facing error can carry. Callers add `or type(err).__name__` where needed.
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0][:limit] if lines else ""


class InternalError(Exception):
    """A bug in the workbench, already logged with its traceback under `incident`.

    Deliberately not a `QuantError`: callers that turn user errors into one-line messages
    must not swallow it. `str(err)` is what a user may see: "internal error, logged as <id>".
    """

    def __init__(self, incident: str) -> None:
        self.incident = incident
        super().__init__(f"internal error, logged as {incident}")


def report_internal(err: BaseException | None = None, *, context: str, details: str = "") -> InternalError:
    """Logs an unexpected failure under a new incident id; returns the `InternalError` to raise or show.

    Args:
        err: the exception caught here (its traceback is logged); None when the failure
            happened elsewhere (a worker process) and `details` carries its traceback.
        context: where it happened, e.g. "job compare in worker 1234".
        details: extra text for the log (a remote traceback, a child's output).
    """
    if isinstance(err, InternalError):
        return err  # logged where it was raised
    incident = secrets.token_hex(4)
    trace = "".join(traceback.format_exception(err)) if err is not None else ""
    INCIDENTS.error("internal error %s in %s\n%s%s", incident, context, trace, details)
    return InternalError(incident)
