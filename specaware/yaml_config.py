"""Reading a YAML file into a config dataclass, with overrides and a clear error for unknown keys."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from hyper400k.text_files import load_yaml, read_text_file

T = TypeVar("T")


def dataclass_from_yaml(cls: type[T], path: str | Path, what: str, **overrides: Any) -> T:
    """``cls(**values)`` from the YAML at ``path``; non-None ``overrides`` (e.g. from a CLI) win."""
    try:
        values = load_yaml(read_text_file(path)) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read {what} config: {exc}") from exc
    values |= {k: v for k, v in overrides.items() if v is not None}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown {what} config keys {unknown}; known: {sorted(known)}")
    return cls(**values)
