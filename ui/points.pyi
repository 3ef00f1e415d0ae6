"""The custom-curve table: gr.Dataframe as a template component (same front end) whose API value
reaches the handler even when it is not a table, so interp.forms names curve_points and the fix;
Gradio's own check would refuse such a value with no message at all.

Gradio writes a type stub (points.pyi) next to any module that defines a component; the stub is
committed so that importing this module writes nothing.
"""
from __future__ import annotations

from typing import Any, Union

import gradio as gr
from gradio.components.dataframe import DataframeData
from gradio.data_classes import GradioRootModel


class _AnyTable(GradioRootModel):
    """A table as gr.Dataframe sends it, or any other value (interp.forms checks it)."""
    root: Union[DataframeData, Any]

from gradio.events import Dependency

class PointsTable(gr.Dataframe):
    """gr.Dataframe whose value may be anything (interp.forms checks it)."""
    is_template = True
    data_model = _AnyTable

    def api_info(self) -> dict:
        schema = DataframeData.model_json_schema()   # the documented shape of the value
        schema["additional_description"] = schema.pop("description", None)
        return schema
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component