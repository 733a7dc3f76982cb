"""The error hierarchy.

Every error a user can cause derives from :class:`SomaError` and says what is wrong, where
(file:line or field path when known) and how to fix it, so the CLI and the API can show it as-is.
"""

from __future__ import annotations


class SomaError(Exception):
    """Base of every error Soma raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class SpecError(SomaError):
    """A capsule, persona, constitution or plan document is invalid.

    ``location`` is ``file:line`` when the document came from a file, and ``field`` is the dotted
    path of the offending field (``inputs.properties.goal.type``), so editors can jump to it.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        super().__init__(message, hint=hint)

    @property
    def location(self) -> str:
        where = self.file or "<input>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return where

    def __str__(self) -> str:
        field = f" at {self.field}" if self.field else ""
        text = f"{self.location}{field}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class PlanError(SpecError):
    """A plan is not a valid DAG of known capsules with wired inputs."""


class NotFound(SomaError):
    """A named capsule, persona, tool, project or record does not exist."""


class ModelError(SomaError):
    """A model provider failed to answer."""


class ModelHTTPError(ModelError):
    """The provider answered with an HTTP error status."""

    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        self.status = status
        super().__init__(message, hint=hint)

    @property
    def transient(self) -> bool:
        return self.status in {408, 409, 429} or self.status >= 500


class ModelTimeout(ModelError):
    """The provider did not answer in time."""


class ModelOutputError(ModelError):
    """The model's answer could not be parsed into a message, tool call or structured output."""


class ModelUnavailable(ModelError):
    """The requested model provider is not installed or not configured."""


class ToolError(SomaError):
    """A tool was called with bad arguments or failed in a way the agent should see."""


class UnknownTool(ToolError, NotFound):
    """The agent asked for a tool that is not registered or not allowed for it."""


class SandboxError(ToolError):
    """The sandbox refused or could not start a process."""


class WorkspaceError(SomaError):
    """A workspace path or git operation failed (path escapes, git errors)."""


class AgentError(SomaError):
    """An agent run ended without a valid final answer."""


class MaxStepsExceeded(AgentError):
    """The agent used its step budget without a final answer."""


class BudgetExceeded(AgentError):
    """A run used more tokens, cost or wall time than its budget allows."""


class Unauthorized(SomaError):
    """The caller did not prove who they are: no credentials, or bad, expired or revoked ones."""


class Forbidden(SomaError):
    """The caller is known but their role or key scopes do not allow this action."""


class Conflict(SomaError):
    """The request clashes with what exists (an id already taken, a decided review)."""


class RateLimited(SomaError):
    """A rate limit or quota is exhausted; ``retry_after_s`` says when the next call can pass."""

    def __init__(self, message: str, *, retry_after_s: float, hint: str | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, hint=hint)


class QuotaExceeded(SomaError):
    """A tenant's monthly budget (tokens or cost) is used up: no new work until it is raised
    or the month ends."""


class PayloadTooLarge(SomaError):
    """A request body or field is bigger than the configured limit."""


class PackageRefused(SomaError):
    """A marketplace package failed verification: tampered, unsigned, untrusted or malformed."""
