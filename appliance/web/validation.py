"""Error bodies of both web apps: small, never echoing the input, always encodable.

FastAPI's own 422 carries each error's ``input`` (the whole offending value: an 8 MiB array, a
``NaN`` that JSON cannot encode, a lone surrogate that UTF-8 cannot) and ``ctx`` values taken from
it. :func:`install_error_handlers` replaces that answer on an app: 422 with ``{"detail": [{"loc",
"msg", "type"}, ...]}`` only, at most :data:`MAX_ERRORS` errors, each location part and message
cut short and made encodable, so a body is at most about :data:`MAX_ERROR_BYTES` bytes.

:func:`strict_json` parses a request body for routes that read it themselves (the admin login):
NaN and Infinity are refused (they are not JSON), and so are strings holding a lone surrogate
(they cannot be stored, logged or sent to the ground as UTF-8); it raises :class:`BadJSON`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

__all__ = ["MAX_ERRORS", "MAX_ERROR_BYTES", "BadJSON", "ErrorItem", "ValidationErrorOut",
           "error_items", "install_error_handlers", "strict_json", "validation_response"]

#: Errors listed in one 422 body (the rest are counted in the last message).
MAX_ERRORS = 8
#: Longest location part (str) and message (characters) in an error body.
MAX_LOC_CHARS, MAX_MSG_CHARS = 48, 160
#: An error body stays under this many bytes (MAX_ERRORS x the longest item, with room to spare).
MAX_ERROR_BYTES = 4096


class ErrorItem(BaseModel):
    """One validation error: where (``loc``: "body", field names, list indexes), what, its type."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """A 422: the request's errors, without the values that caused them."""

    detail: list[ErrorItem]


class BadJSON(ValueError):
    """A request body that is not strict JSON (the message says why, never quoting it)."""


def _text(value: object, limit: int) -> str:
    s = str(value)
    if len(s) > limit:
        s = s[:limit - 1] + "…"
    return s.encode("utf-8", "replace").decode("utf-8")


def error_items(errors: Iterable[Mapping[str, Any]], prefix: Sequence[str | int] = (),
                ) -> list[dict[str, Any]]:
    """``loc``/``msg``/``type`` of at most MAX_ERRORS ``errors`` (pydantic's or FastAPI's shape).

    ``input`` and ``ctx`` are dropped; a JSON decode error's reason is kept in its message.
    ``prefix`` is put before each location (``("body",)`` for a model validated by hand).
    """
    out: list[dict[str, Any]] = []
    errors = list(errors)
    for err in errors[:MAX_ERRORS]:
        loc = [*prefix, *err.get("loc", ())]
        msg = str(err.get("msg", ""))
        ctx = err.get("ctx")
        if err.get("type") == "json_invalid" and isinstance(ctx, Mapping) and "error" in ctx:
            msg = f"{msg}: {ctx['error']}"
        out.append({"loc": [x if isinstance(x, int) and not isinstance(x, bool)
                            else _text(x, MAX_LOC_CHARS) for x in loc[:8]],
                    "msg": _text(msg, MAX_MSG_CHARS),
                    "type": _text(err.get("type", "value_error"), MAX_LOC_CHARS)})
    if len(errors) > MAX_ERRORS and out:
        out[-1]["msg"] = _text(f"{out[-1]['msg']} (and {len(errors) - MAX_ERRORS} more errors)",
                               MAX_MSG_CHARS + 40)
    return out


def validation_response(items: list[dict[str, Any]]) -> JSONResponse:
    """The 422 answer for ``items`` (from :func:`error_items`)."""
    return JSONResponse({"detail": items}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_response(error_items(exc.errors()))


def install_error_handlers(app: FastAPI) -> None:
    """Answer request validation errors on ``app`` with the small 422 described above."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)


# Escapes or raw (surrogatepass-decoded) UTF-8 of a surrogate code point: only then is a walk needed.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _no_constant(name: str) -> Any:
    raise BadJSON(f"{name} is not a JSON number")


def _check_text(doc: Any) -> None:
    stack = [doc]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            try:
                x.encode("utf-8")
            except UnicodeEncodeError:
                raise BadJSON("a string holds a lone surrogate (not UTF-8 text)") from None
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)


def strict_json(body: bytes) -> Any:
    """Parse ``body`` as strict JSON; raise BadJSON naming the problem (never the input)."""
    try:
        doc = json.loads(body, parse_constant=_no_constant)
    except BadJSON:
        raise
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        reason = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8"
        raise BadJSON(f"not JSON: {reason}") from None
    except RecursionError:
        raise BadJSON("not JSON: nested too deeply") from None
    if _SURROGATE.search(body):
        _check_text(doc)
    return doc
