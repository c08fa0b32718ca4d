"""Where data and caches live: ``data.root`` if set, else $ELUREPRO_DATA, else a per-user cache."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "elurepro"


def resolve_data_root(root: str | os.PathLike | None) -> Path:
    if root:
        return Path(root).expanduser()
    env = os.environ.get("ELUREPRO_DATA")
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "data"


def resolve_cache_dir(cache: str | os.PathLike | None) -> Path:
    """Writable folder for derived data (whitened CIFAR, mean images); never inside the data root,
    which may be read-only."""
    if cache:
        return Path(cache).expanduser()
    env = os.environ.get("ELUREPRO_CACHE")
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "derived"
