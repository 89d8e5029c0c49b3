"""Reading the text files a user writes (manifests, sidecars, rule sets, id lists, configs), with every failure
naming the file.

Two failures escaped the callers' handlers and printed a message that named nothing:
- ``Path.read_text`` raises ``UnicodeDecodeError`` for a file that is not UTF-8 (a binary file given by
  mistake, a Latin-1 export); it is a ``ValueError``, not the ``OSError`` the callers catch.
- ``yaml.safe_load`` raises ``yaml.YAMLError`` for text it cannot parse, but a plain ``ValueError`` for a value
  it parses and cannot build: an unquoted impossible date such as ``2023-13-40`` (its timestamp constructor
  calls ``datetime.date``) or the year 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_text_file(path: str | Path) -> str:
    """The file's UTF-8 text; one that is not UTF-8 raises a ``ValueError`` naming it (OS errors pass as they are)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``; a value PyYAML cannot build raises ``yaml.YAMLError`` saying which."""
    try:
        return yaml.safe_load(text)
    except (ValueError, OverflowError) as exc:
        raise yaml.YAMLError(f"a value cannot be read ({exc}); quote it to keep it as text") from exc
