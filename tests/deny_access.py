"""Imported first by a child process run as root: opening, listing, creating or renaming a path named in
``$DENY_ACCESS`` (or anything under it) raises ``PermissionError``, as the kernel does for a non-root user on a
chmod 000 path."""

from __future__ import annotations

import builtins
import errno
import io
import os

_DENIED = [p for p in os.environ.get("DENY_ACCESS", "").split(os.pathsep) if p]


def _check(path: object) -> None:
    if isinstance(path, int):
        return
    target = os.path.abspath(os.fsdecode(os.fspath(path)))
    for denied in _DENIED:
        if target == denied or target.startswith(denied + os.sep):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(os.fspath(path)))


def _guard(function):
    def guarded(path=".", *args, **kwargs):
        _check(path)
        return function(path, *args, **kwargs)

    return guarded


builtins.open = io.open = _guard(io.open)
os.open = _guard(os.open)
os.scandir = _guard(os.scandir)
os.listdir = _guard(os.listdir)
os.mkdir = _guard(os.mkdir)
os.unlink = _guard(os.unlink)


def _guard_both(function):
    def guarded(src, dst, *args, **kwargs):
        _check(src)
        _check(dst)
        return function(src, dst, *args, **kwargs)

    return guarded


os.replace = _guard_both(os.replace)
os.rename = _guard_both(os.rename)
