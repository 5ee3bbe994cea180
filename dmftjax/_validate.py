"""Python-level argument checks, run before anything is traced or compiled."""

from __future__ import annotations

import math

import jax
import numpy as np


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def is_bool(value) -> bool:
    """A Python, numpy or array boolean: refused wherever a number is meant."""
    return isinstance(value, (bool, np.bool_)) or getattr(value, "dtype", None) == np.bool_


def _as_float(name: str, value) -> float | None:
    if not is_concrete(value):
        return None  # traced (inside vmap/grad): checked by the caller's concrete value
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a real number, got the string {value!r}")
    if is_bool(value):
        raise ValueError(f"{name} must be a real number, got the boolean {value!r}")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a real number, got {value!r}") from err
    if arr.shape != ():
        raise ValueError(f"{name} must be a scalar, got an array of shape {arr.shape}")
    v = float(arr)
    if math.isnan(v):
        raise ValueError(f"{name} is NaN; pass a finite number")
    if math.isinf(v):
        raise ValueError(f"{name} is infinite; pass a finite number")
    return v


def check_real(name: str, value) -> None:
    _as_float(name, value)


def check_positive(name: str, value) -> None:
    v = _as_float(name, value)
    if v is not None and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")


def check_nonnegative(name: str, value) -> None:
    v = _as_float(name, value)
    if v is not None and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")


def check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def static_int(value):
    """Converter of a static integer field: a numpy integer becomes a Python int (a JAX
    or numpy scalar must not be static); anything else is left for `check_int`."""
    if isinstance(value, np.integer):
        return int(value)
    return value


def check_precision() -> None:
    """The engines need float64: with JAX's default float32 the fixed point's tolerances
    (1e-11) cannot be met, more replicas and seeds diverge, and the memory kernels lose
    their small tails. Refused rather than run in float32 behind the user's back."""
    if not jax.config.jax_enable_x64:  # type: ignore[attr-defined]  # flag attrs are dynamic
        raise ValueError(
            "float64 is off (JAX's default): dmftjax computes in float64. Run "
            "jax.config.update('jax_enable_x64', True) right after importing jax, before any "
            "array is made (or set JAX_ENABLE_X64=1 in the environment)"
        )


def check_key(key) -> None:
    if key is None:
        raise ValueError("pass an explicit random key: key=jax.random.key(0)")
    if not isinstance(key, jax.Array):
        raise ValueError(
            f"key must be a jax.random key such as jax.random.key(0), got {type(key).__name__}"
        )
    shape = key.shape
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if shape != ():
            raise ValueError(f"key must be a single key, got a batch of shape {shape}")
    elif shape != (2,):
        raise ValueError("key must be jax.random.key(seed) or jax.random.PRNGKey(seed)")


def as_arrays(tree):
    """Python numbers in a pytree become JAX arrays, so a change of value (alpha, lam,
    step size, ...) reuses the compiled engine instead of tracing it again. Static
    fields (`steps`) are not leaves and stay Python ints."""
    return jax.tree.map(
        lambda x: (
            jax.numpy.asarray(x, dtype=float)
            if isinstance(x, (int, float)) and not isinstance(x, bool)
            else x
        ),
        tree,
    )


INDEX_LIMIT = 2**31 - 1  # XLA's 32-bit index range for one array


def available_memory() -> int:
    """Bytes one call may use: the default device's limit when it reports one (GPU, TPU),
    else the machine's physical memory."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory statistics
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    import os

    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_resources(what: str, *, largest: int, nbytes: float, fix: str) -> None:
    """Refuse before compiling a call whose largest array would overflow a 32-bit index
    (`largest` elements) or whose working memory (`nbytes`, an estimate) exceeds what
    the machine has; `fix` says how to make it fit."""
    if largest > INDEX_LIMIT:
        raise ValueError(
            f"{what}: one array would hold {largest:.3g} elements, beyond the "
            f"2^31 - 1 that XLA can index; {fix}"
        )
    have = available_memory()
    if nbytes > 0.8 * have:
        raise ValueError(
            f"{what} needs about {nbytes / 2**30:.3g} GiB of memory, more than "
            f"the {have / 2**30:.3g} GiB here; {fix}"
        )
