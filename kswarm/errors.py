"""One error root per domain, so each edge can translate intent, not strings.

    KswarmError
    ├── SpecError          a job manifest or option is invalid (exit code 2)
    ├── ConfigError        the environment or a pool config is unusable (exit code 2)
    ├── LedgerError        the ledger cannot be reached or is inconsistent
    │   └── LedgerUnavailable
    ├── ToolError          a tool refused or failed a call
    │   ├── ToolNotAllowed
    │   ├── UnknownTool
    │   ├── ToolCallFailed       the tool answered with an error (MCP ``isError``): not retried
    │   └── ToolServerUnavailable  an MCP server cannot be reached or timed out: retried
    └── LLMError           see ``kswarm.llm.errors`` for the tree of model-call errors

The operator maps these to kopf ``PermanentError``/``TemporaryError``; activities map them to
Temporal ``ApplicationError(non_retryable=...)``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "KswarmError",
    "LedgerError",
    "LedgerUnavailable",
    "SpecError",
    "ToolCallFailed",
    "ToolError",
    "ToolNotAllowed",
    "ToolServerUnavailable",
    "UnknownTool",
]


class KswarmError(Exception):
    """Root of every error kswarm raises on purpose."""

    retryable: bool = False


class SpecError(KswarmError, ValueError):
    """A job manifest is invalid; ``path`` names the field (``spec.subagents.maxConcurrent``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class ConfigError(KswarmError):
    """The environment or a configuration file is unusable."""


class LedgerError(KswarmError):
    """The ledger failed or holds something inconsistent."""


class LedgerBehind(LedgerError):
    """The ledger database is not at the schema revision this kswarm needs."""


class LedgerUnavailable(LedgerError):
    """The ledger database cannot be reached. ``url`` never contains the password."""

    retryable = True

    def __init__(self, url: str, cause: str) -> None:
        self.url = url
        super().__init__(f"ledger database {url} is unreachable: {cause}")


class ToolError(KswarmError):
    """A tool call failed."""

    retryable = True


class ToolNotAllowed(ToolError):
    """The tool exists but the job's allow-list does not include it."""

    retryable = False


class UnknownTool(ToolError):
    """No tool of that name is registered."""

    retryable = False


class ToolCallFailed(ToolError):
    """The tool ran and answered with an error; the answer goes back to the model.

    ``result`` is the tool's whole answer, stored in the ledger beside the error."""

    retryable = False

    def __init__(self, message: str, result: object = None) -> None:
        self.result = result
        super().__init__(message)


class ToolServerUnavailable(ToolError):
    """An MCP tool server cannot be reached, dropped the connection, or timed out."""

    retryable = True

    def __init__(self, server: str, cause: str) -> None:
        self.server = server
        super().__init__(f"tool server {server!r} is unavailable: {cause}")
