r"""JAX's persistent compilation cache for dmftjax: a second process that runs a shape
it has run before loads the compiled solver from disk instead of compiling it again.

The command line and the notebooks turn it on; a library user calls
`enable_compilation_cache()` once. The directory is `$DMFTJAX_CACHE_DIR` when set (the
empty string turns the cache off), else `$XDG_CACHE_HOME/dmftjax/jax-<version>` (or
`~/.cache/...`). Entries are keyed by JAX on the computation, the compiler options and
the device, so a stale entry is never used; deleting the directory is always safe.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax


def compilation_cache_dir() -> Path | None:
    """The cache directory dmftjax uses (`None`: turned off by `DMFTJAX_CACHE_DIR=""`)."""
    env = os.environ.get("DMFTJAX_CACHE_DIR")
    if env is not None:
        return Path(env).expanduser() if env.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dmftjax" / f"jax-{jax.__version__}"


def enable_compilation_cache(
    path: str | os.PathLike | None = None, min_compile_seconds: float = 0.5
) -> Path | None:
    r"""Turn on JAX's persistent compilation cache in `path` (default:
    `compilation_cache_dir()`), for every compilation that takes at least
    `min_compile_seconds`. Returns the directory, or `None` when the cache is turned off
    (`DMFTJAX_CACHE_DIR=""` and no `path`). Call it before the first computation."""
    target = compilation_cache_dir() if path is None else Path(path).expanduser()
    if target is None:
        return None
    if isinstance(min_compile_seconds, bool) or not min_compile_seconds >= 0:
        raise ValueError(f"min_compile_seconds must be >= 0, got {min_compile_seconds!r}")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(
            f"cannot use {str(target)!r} as the compilation cache ({err}); set "
            "DMFTJAX_CACHE_DIR to a writable directory, or to '' to turn the "
            "cache off"
        ) from None
    jax.config.update("jax_compilation_cache_dir", str(target))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return target


__all__ = ["enable_compilation_cache", "compilation_cache_dir"]
