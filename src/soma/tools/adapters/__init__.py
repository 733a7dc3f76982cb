"""Tools that act on external services (GitHub, Slack, AWS, HTTP) with the tenant's credentials.

They run in the worker, not the sandbox (they need the network the sandbox withholds), read
credentials through ``ToolContext.secrets`` and never put them in what the model sees.
"""

from soma.tools.adapters.aws import AWS_TOOLS
from soma.tools.adapters.git_push import GIT_PUSH_TOOLS
from soma.tools.adapters.github import GITHUB_TOOLS
from soma.tools.adapters.http_fetch import HTTP_TOOLS
from soma.tools.adapters.slack import SLACK_TOOLS
from soma.tools.base import Tool

ADAPTER_TOOLS: list[Tool] = [
    *GITHUB_TOOLS,
    *GIT_PUSH_TOOLS,
    *SLACK_TOOLS,
    *AWS_TOOLS,
    *HTTP_TOOLS,
]
"""Registered in every default registry; an agent is offered one only when its capsule grants
it and its persona's tool patterns allow it."""

__all__ = ["ADAPTER_TOOLS"]
