"""Model providers behind one :class:`Model` protocol."""

from soma.models.protocol import Model
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
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "OutputSchema",
    "StreamChunk",
    "ToolCall",
    "ToolSpec",
    "Usage",
]
