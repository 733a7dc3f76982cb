"""Model providers behind one :class:`Model` protocol."""

from soma.models.function import FunctionModel
from soma.models.openai_compat import OpenAICompatModel
from soma.models.protocol import Model
from soma.models.registry import resolve_model
from soma.models.scripted import ScriptedModel, final, tool_call, tool_calls
from soma.models.types import (
    Message,
    ModelRequest,
    ModelResponse,
    OutputSchema,
    StreamChunk,
    ToolCall,
    ToolSpec,
    Usage,
)

__all__ = [
    "FunctionModel",
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "OpenAICompatModel",
    "OutputSchema",
    "ScriptedModel",
    "StreamChunk",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "final",
    "resolve_model",
    "tool_call",
    "tool_calls",
]
