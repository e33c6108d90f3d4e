"""File paths in node configs: which fields name files, how they resolve, what can be checked.

A node config marks its file fields with :data:`InputPath` (a file the node reads) or
:data:`OutputPath` (a file the node writes)::

    class Config(NodeConfig):
        path: InputPath = Field(..., min_length=1)

That marker is all a node type (built-in or third-party) needs for two behaviours:

* **Resolution.** A relative path in a config loaded from a file is resolved against the
  folder of that config file (``examples/x.json`` with ``"out/a.png"`` writes
  ``examples/out/a.png``, wherever ``streamlab run`` is started). A config given as a dict, a
  JSON string or on stdin has no folder: its relative paths stay relative to the working
  directory, unless ``load_config(..., base_dir=...)`` names one. ``~`` is expanded.
* **Checks without running** (``load_config(..., check_files=True)``, used by
  ``streamlab validate`` and ``run``): an input must exist, be a regular file and be
  readable; an output must not be a directory, FIFO or device, and its folder (or the first
  existing ancestor, since sinks create missing folders) must be a writable directory; two
  nodes must not write the same file. Nothing is opened: FIFOs and devices are only stat'ed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

__all__ = ["InputPath", "OutputPath", "PathRole", "path_fields", "resolve_path", "check_path"]


@dataclass(frozen=True)
class PathRole:
    """Field marker: the field holds a file path the node reads (input) or writes (output)."""

    kind: Literal["input", "output"]


InputPath = Annotated[str, PathRole("input")]
OutputPath = Annotated[str, PathRole("output")]


def path_fields(model: type[BaseModel]) -> dict[str, str]:
    """``{field name: "input" | "output"}`` for the marked fields of a config model.

    A field is marked when its type is ``InputPath``/``OutputPath``, optionally in a union
    (``OutputPath | None``: None means no file).
    """
    out: dict[str, str] = {}
    for name, field in model.model_fields.items():
        role = _role(field.metadata) or _role_in(field.annotation)
        if role is not None:
            out[name] = role
    return out


def _role(metadata: Any) -> str | None:
    for meta in metadata:
        if isinstance(meta, PathRole):
            return meta.kind
    return None


def _role_in(annotation: Any) -> str | None:
    """The PathRole of ``Annotated[str, PathRole]`` in a union annotation."""
    if get_origin(annotation) is Annotated:
        return _role(annotation.__metadata__)
    if get_origin(annotation) in (Union, UnionType):
        for arg in get_args(annotation):
            role = _role_in(arg)
            if role is not None:
                return role
    return None


def resolve_path(value: str, base_dir: Path | None) -> str:
    """``value`` with ``~`` expanded and, if still relative, joined to ``base_dir``."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p) if value.startswith("~") else value
    return value if base_dir is None else str(base_dir / p)


def _kind_of(mode: int) -> str | None:
    """A name for a file that is not a regular file (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_path(value: str, kind: str, base_note: str) -> str | None:
    """What is wrong with using ``value`` as an input/output file now, or None if nothing.

    ``base_note`` explains how a relative path was resolved (added to "no such file").
    """
    p = Path(value).expanduser()
    try:
        st = p.stat()
    except (FileNotFoundError, NotADirectoryError):  # a file in the way is reported below
        st = None
    except OSError as exc:
        return f"cannot access {str(p)!r}: {exc.strerror or exc}"
    if kind == "input":
        if st is None:
            return f"no such file {str(p)!r}{base_note}"
        what = _kind_of(st.st_mode)
        if what is not None:
            return f"{str(p)!r} is {what}; expected a regular file to read"
        if not os.access(p, os.R_OK):
            return f"{str(p)!r} is not readable (permission denied)"
        return None
    if st is not None:
        what = _kind_of(st.st_mode)
        if what is not None:
            return f"{str(p)!r} is {what}; expected a regular file to write"
        if not os.access(p, os.W_OK):
            return f"{str(p)!r} exists and is not writable (permission denied)"
        return None
    # Sinks create missing folders: the first existing ancestor must be a writable directory.
    parent = p.absolute().parent
    while True:
        try:
            pst = parent.stat()
            break
        except (FileNotFoundError, NotADirectoryError):
            parent = parent.parent
        except OSError as exc:
            return f"cannot access {str(parent)!r}: {exc.strerror or exc}"
    if not stat.S_ISDIR(pst.st_mode):
        return f"cannot create {str(p)!r}: {str(parent)!r} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create {str(p)!r}: directory {str(parent)!r} is not writable"
    return None


def iter_paths(config: Any, fields: dict[str, str]) -> list[tuple[str, str, str]]:
    """``[(field, kind, value)]`` of a validated config's marked fields that are set."""
    out = []
    for name, kind in fields.items():
        value = getattr(config, name, None)
        if isinstance(value, str):
            out.append((name, kind, value))
    return out
