"""The studio's components by name. Handlers take named inputs and return {name: value} dicts (a
name they leave out keeps its value); the wiring turns names into components, so no handler
depends on the position of an output."""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Sequence

import gradio as gr


class Components(dict):
    """name -> Gradio component, with list and dict views for event wiring."""

    def __call__(self, *names: str) -> list:
        """The components of `names`, in that order (an event's inputs or outputs)."""
        return [self[n] for n in names]

    def kwargs(self, **params: str) -> dict:
        """{handler parameter: component} from {parameter: component name}."""
        return {p: self[n] for p, n in params.items()}

    def named(self, fn: Callable, outputs: Sequence[str] = ()) -> Callable:
        """fn (plain or generator) with its {name: value} results keyed by component; an
        empty dict leaves every one of `outputs` as it is."""
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen_wrapper(*args, **kwargs):
                for out in fn(*args, **kwargs):
                    yield self._keyed(out, outputs)
            return gen_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return self._keyed(fn(*args, **kwargs), outputs)
        return wrapper

    def _keyed(self, out: Any, outputs: Sequence[str]) -> Any:
        if not isinstance(out, dict):
            return out
        if not out:
            if not outputs:
                return None
            return tuple(gr.skip() for _ in outputs) if len(outputs) > 1 else gr.skip()
        unknown = sorted(n for n in out if n not in self)
        if unknown:
            raise KeyError(f"handler returned unknown component name(s) {unknown}")
        return {self[n]: v for n, v in out.items()}
