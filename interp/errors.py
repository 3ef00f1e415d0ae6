"""The library's named exceptions. Bad arguments raise plain ValueError/TypeError."""


class InterpError(Exception):
    """Base of interp's own errors; the app shows their message to the user."""


class ModelUnavailable(InterpError):
    """A requested model (or its weights) cannot be loaded; the message names it and the cause."""


class InputError(InterpError, ValueError):
    """An input image or file is unusable; the message names the problem and the fix."""


class Cancelled(InterpError):
    """Work stopped because its cancel token was set; finished results are kept."""


def one_line(exc: BaseException) -> str:
    """An error as one line: '<path>: <cause>' for file errors, else its message."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return " ".join(str(exc).split()) or type(exc).__name__
