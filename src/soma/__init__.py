"""SomaAgentHub: teams of AI agents, governed by a constitution, that deliver whole projects."""

from soma.errors import SomaError, SpecError
from soma.settings import Settings

__all__ = ["Settings", "SomaError", "SpecError", "__version__"]
__version__ = "0.1.0"
