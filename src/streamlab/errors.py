"""The StreamLab error tree.

Every error StreamLab raises on purpose derives from :class:`StreamLabError`::

    StreamLabError
    ├── FrameError            a DataFrame was built from invalid data (bad dtype, shape, metadata)
    ├── ConfigError           a pipeline config is invalid; carries every problem with its JSON path
    │   └── UnknownNodeTypeError   a node type is not registered (lists close matches)
    ├── NodeError             a node failed while running; names the node and chains the cause
    ├── PipelineError         a pipeline run failed; `node_id` names the node that caused it
    │   └── PipelineStopped   an operation on a pipeline that has already stopped
    ├── PoolError             PipelinePool misuse (closed pool, bad limits)
    └── BackendError          an optional backend (Ray, LSL, Prometheus) is missing or failed

Control flow is not an error: :class:`EndOfStream` signals that a channel or a source has no
more frames. It derives from :class:`Exception` (not ``StreamLabError``) so that
``except StreamLabError`` never catches the normal end of a stream.

Foreign exceptions are translated where they enter (pydantic errors become ``ConfigError``
problems; a node's own exception is the ``__cause__`` of a ``NodeError``/``PipelineError``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "StreamLabError",
    "FrameError",
    "ConfigError",
    "ConfigProblem",
    "UnknownNodeTypeError",
    "NodeError",
    "PipelineError",
    "PipelineStopped",
    "PoolError",
    "BackendError",
    "EndOfStream",
    "missing_extra",
]


class StreamLabError(Exception):
    """Root of every error StreamLab raises on purpose."""


class EndOfStream(Exception):
    """No more frames: a channel was closed and drained, or a source is exhausted."""


class FrameError(StreamLabError, ValueError):
    """A DataFrame was given invalid data."""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a config: the JSON path where it is and what is wrong there."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(StreamLabError, ValueError):
    """A pipeline config is invalid. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[ConfigProblem] | ConfigProblem | str, *, source: str = "") -> None:
        if isinstance(problems, str):
            problems = [ConfigProblem("$", problems)]
        elif isinstance(problems, ConfigProblem):
            problems = [problems]
        self.problems: list[ConfigProblem] = list(problems)
        self.source = source
        head = f"invalid config {source}: " if source else "invalid config: "
        if len(self.problems) == 1:
            text = head + str(self.problems[0])
        else:
            text = head + f"{len(self.problems)} problems\n" + "\n".join(
                "  " + str(p) for p in self.problems
            )
        super().__init__(text)


class UnknownNodeTypeError(ConfigError, LookupError):
    """A node type name is not in the registry."""

    def __init__(self, type_name: str, suggestions: list[str], path: str = "$") -> None:
        self.type_name = type_name
        self.suggestions = suggestions
        hint = f" (did you mean {', '.join(repr(s) for s in suggestions)}?)" if suggestions else ""
        super().__init__(
            ConfigProblem(path, f"unknown node type {type_name!r}{hint}; "
                                "run 'streamlab nodes' to list the registered types")
        )


class NodeError(StreamLabError):
    """A node failed. ``node_id`` names it; the node's own exception is ``__cause__``."""

    def __init__(self, node_id: str, message: str) -> None:
        self.node_id = node_id
        super().__init__(f"node {node_id!r}: {message}")


class PipelineError(StreamLabError):
    """A pipeline run failed. ``node_id`` names the node at fault (if any); see ``__cause__``."""

    def __init__(self, message: str, *, node_id: str | None = None) -> None:
        self.node_id = node_id
        super().__init__(message)


class PipelineStopped(PipelineError):
    """The pipeline has already stopped; no more triggers or outputs."""


class PoolError(StreamLabError):
    """PipelinePool misuse: a closed pool, an invalid limit."""


class BackendError(StreamLabError):
    """An optional backend is missing or failed."""


def missing_extra(module: str, extra: str) -> BackendError:
    """The error for an optional dependency that is not installed."""
    return BackendError(
        f"this feature needs the optional dependency {module!r}: "
        f"install it with  pip install 'streamlab[{extra}]'"
    )
