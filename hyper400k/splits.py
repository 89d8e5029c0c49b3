"""Train/val/test splits by flight line, never by patch, so no flight line leaks between splits.

A flight line's split is a pure function of ``(seed, flight line)``: a SHA-256 hash mapped to a uniform
number in ``[0, 1)`` and bucketed by the cumulative fractions in the fixed order train, val, test. Products
and patches of the same flight line therefore always land in the same split, on any machine and in any
build order, and adding flight lines later never moves the ones already assigned.

Hashing alone can leave a split empty when there are only a handful of flight lines (three lines and
0.8/0.1/0.1 fractions give an empty ``val`` two times in three). :func:`split_flight_lines`, which the
dataset build uses over every flight line it knows, repairs exactly that case by allocating counts.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

# The split names of the STAC ml-aoi v0.2.0 extension, used as they are everywhere: sample meta.json, shard
# folders, STAC items, the patch table and loader filters, so a split is the same word wherever it is read.
SPLITS = ("train", "validate", "test")
DEFAULT_FRACTIONS: Mapping[str, float] = {"train": 0.8, "validate": 0.1, "test": 0.1}
# The short spelling accepted on input (fractions, filters) for the validation split.
SPLIT_ALIASES = {"val": "validate"}


def canonical_split(name: str) -> str:
    """A split name as :data:`SPLITS` spells it (``val`` is ``validate``)."""
    return SPLIT_ALIASES.get(name, name)


def check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """The fractions of all three splits (missing ones 0), after checking they form a distribution.

    Raises ``ValueError`` for unknown split names, negative or non-finite values, or a sum other than 1.
    """
    given = {canonical_split(name): value for name, value in fractions.items()}
    unknown = set(given) - set(SPLITS)
    if unknown or len(given) != len(fractions):
        raise ValueError(
            f"unknown or repeated split names in {sorted(fractions)}; expected a subset of {SPLITS}"
        )
    full = {name: float(given.get(name, 0.0)) for name in SPLITS}
    for name, value in full.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"fraction of {name!r} must be a finite number >= 0, got {value!r}")
    total = sum(full.values())
    if not math.isclose(total, 1.0, rel_tol=0.0, abs_tol=1e-9):
        raise ValueError(f"split fractions must sum to 1, got {total!r} from {dict(fractions)}")
    return full


def flight_line_hash(flight_line: str, seed: int = 0) -> float:
    """A uniform number in ``[0, 1)`` fixed by ``(seed, flight_line)`` (first 64 bits of SHA-256)."""
    if not flight_line:
        raise ValueError("flight line must be a non-empty string")
    digest = hashlib.sha256(f"{seed}:{flight_line}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(flight_line: str, fractions: Mapping[str, float] = DEFAULT_FRACTIONS, seed: int = 0) -> str:
    """The split of one flight line: its hash bucketed by the cumulative fractions (train, val, test)."""
    full = check_fractions(fractions)
    u = flight_line_hash(flight_line, seed)
    upper = 0.0
    for name in SPLITS:
        upper += full[name]
        if u < upper:
            return name
    # Rounding can leave the last bucket's upper edge a hair below 1: use the last non-empty split.
    return next(name for name in reversed(SPLITS) if full[name] > 0)


def split_flight_lines(
    flight_lines: Iterable[str], fractions: Mapping[str, float] = DEFAULT_FRACTIONS, seed: int = 0
) -> dict[str, str]:
    """``{flight line: split}`` for a set of flight lines (duplicates are fine).

    Each line gets :func:`assign_split`'s answer, unless that leaves a split with a positive fraction empty
    while there are at least as many lines as such splits. Then the lines are ordered by their hash and
    cut into consecutive runs (train, val, test) whose sizes follow the fractions by largest remainder,
    with at least one line per non-zero split. Both paths depend only on the set, the fractions and the
    seed, so the result is deterministic.
    """
    full = check_fractions(fractions)
    lines = sorted(set(flight_lines))
    assigned = {line: assign_split(line, full, seed) for line in lines}
    wanted = [name for name in SPLITS if full[name] > 0]
    if len(lines) < len(wanted) or set(assigned.values()) == set(wanted):
        return assigned
    counts = _allocate(len(lines), full)
    ordered = sorted(lines, key=lambda line: (flight_line_hash(line, seed), line))
    result: dict[str, str] = {}
    start = 0
    for name in SPLITS:
        for line in ordered[start : start + counts[name]]:
            result[line] = name
        start += counts[name]
    return result


def _allocate(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Split ``n`` items into integer counts close to ``n * fraction``, at least 1 per non-zero split.

    Largest-remainder (Hamilton) apportionment with a floor of one; ties go to the earlier split in
    ``SPLITS``. Requires ``n`` >= the number of non-zero splits.
    """
    quota = {name: n * fractions[name] for name in SPLITS}
    counts = {name: (max(1, math.floor(q)) if fractions[name] > 0 else 0) for name, q in quota.items()}
    while sum(counts.values()) > n:
        # Take from the split most over its quota that can spare one.
        spare = [name for name in SPLITS if counts[name] > 1]
        name = max(spare, key=lambda s: (counts[s] - quota[s], -SPLITS.index(s)))
        counts[name] -= 1
    while sum(counts.values()) < n:
        # Give to the non-zero split furthest below its quota.
        open_ = [name for name in SPLITS if fractions[name] > 0]
        name = max(open_, key=lambda s: (quota[s] - counts[s], -SPLITS.index(s)))
        counts[name] += 1
    return counts
