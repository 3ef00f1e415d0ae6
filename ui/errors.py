"""How the studio reports problems: library errors become gr.Error with interp's own message, an
out-of-memory error a hint, anything unexpected a short line (the traceback goes to the log)."""
from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Optional

import gradio as gr

from interp.errors import InterpError
from interp.session import Session
from interp.video import FFmpegError

log = logging.getLogger("interp.app")
OOM_HINT = ("The GPU ran out of memory. Lower Size or Candidates, or restart the app with "
            "--attention-slicing / --vae-tiling / --cpu-offload.")


def user_error(exc: BaseException) -> gr.Error:
    """The gr.Error a user sees for an exception from the library."""
    if isinstance(exc, gr.Error):
        return exc
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return gr.Error(OOM_HINT)
    if isinstance(exc, (InterpError, ValueError, TypeError)):
        return gr.Error(str(exc))
    if isinstance(exc, (OSError, FFmpegError)):
        log.error("could not write files", exc_info=exc)
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else "see the server log"
        return gr.Error(f"The server could not write the video and downloads ({cause}); the "
                        "frames are kept: try “Update video and downloads” later.")
    log.error("unexpected error", exc_info=exc)
    return gr.Error(f"Unexpected error ({type(exc).__name__}: {str(exc)[:200]}); see the server "
                    "log.")


def errors(fn):
    """Wrap a handler (plain or generator) so library errors reach the user as gr.Error."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise user_error(exc) from exc
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise user_error(exc) from exc
    return wrapper


def need_render(session: Optional[Session]) -> Session:
    if session is None or session.settings is None:
        raise gr.Error("Nothing rendered yet: press Interpolate first.")
    return session


def whole(value: Any, name: str) -> int:
    """A widget's number as an int; gr.Error naming the field otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a whole number, got {value!r}") from None
    if not number.is_integer():
        raise gr.Error(f"{name} must be a whole number, got {value!r}")
    return int(number)


def file_path(payload: Any) -> Optional[str]:
    """A file widget's value (path string, FileData dict or tempfile object) -> its path."""
    if payload is None or isinstance(payload, str):
        return payload
    if isinstance(payload, dict):
        return payload.get("path")
    return getattr(payload, "name", None)
