"""YAML text to Python values, with every way PyYAML fails to read a file reported as a ``yaml.YAMLError``.

``yaml.safe_load`` raises ``YAMLError`` for text it cannot parse, but a plain ``ValueError`` for a value it
parses and cannot build: an unquoted impossible date such as ``2023-13-40`` (its timestamp constructor calls
``datetime.date``) or the year 0. Each caller names its file in one ``except yaml.YAMLError`` handler, so
that ``ValueError`` went out bare ("month must be in 1..12") and named nothing.
"""

from __future__ import annotations

from typing import Any

import yaml


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``; a value PyYAML cannot build raises ``yaml.YAMLError`` saying which."""
    try:
        return yaml.safe_load(text)
    except (ValueError, OverflowError) as exc:
        raise yaml.YAMLError(f"a value cannot be read ({exc}); quote it to keep it as text") from exc
