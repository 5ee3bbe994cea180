r"""Batched, sharded, resumable parameter sweeps.

A sweep evaluates one engine on every point of a grid over `alpha`, `lam`,
`step_size` and a preprocessing parameter `prep`. Points are evaluated in chunks: each
chunk is one `jax.vmap` over its points (the engines accept array-valued problem
fields), its batch axis laid across every available device with
`jax.sharding.NamedSharding` (the batch is padded to a multiple of the device count),
so the same call uses one CPU, one GPU or many.

By default every point uses the same key (common random numbers: neighbouring points
share their Monte Carlo noise, so a curve across the grid is smooth and its argmin
reliable); with `common_random_numbers=False` point `i` uses
`jax.random.fold_in(key, i)`. Either way its value does not depend on the devices, nor on
which points share a chunk; it does depend, at the rounding level (~1e-14), on
`batch_size`, the width of the compiled vmap (XLA orders a reduction differently for
another width), so a resume must use the sweep's own `batch_size` and is refused
otherwise.

With `out=` a sweep is resumable. Its folder `out/sweep-<hash>` (the hash of every
setting that changes a result) holds one `.npz` file per chunk, written to a temporary
file and moved into place with `os.replace`, so a chunk is on disk whole or not at all,
and a `manifest.json` (written the same way) that indexes them. Re-running the same
sweep reads the chunks already there, computes only the missing points, and assembles
the grid; every point is computed and stored exactly once.

Across processes (machines), with JAX's own runtime: after `jax.distributed.initialize`
in every process, the same `sweep(..., out=folder)` call in each (on a folder all of them
see) deals the missing points out in blocks of `batch_size`, each process computing its
share on its own devices and writing its own chunk files; after a barrier every process
reads the whole grid back and returns it. A point's value is the same bits as in a
single-process run (the per-device program is the same), and a sweep killed in any
process resumes with any number of processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._algorithms import AbstractAlgorithm
from ._dmft import check_dmft_resources, dmft_replica
from ._estimators import AbstractEstimator, as_estimator
from ._problem import AbstractInit, Problem, check_problem
from ._trajectory import OBSERVABLES
from ._validate import check_int, check_key

AXES = ("alpha", "lam", "step_size", "prep")
ENGINES = ("dmft", "fixed_point", "spectral")
DIVERGENCE_NORM = 1e8
FORMAT_VERSION = 1

# Quantities each engine stores per point (besides the DMFT's curves).
_FIXED_POINT_FIELDS = (
    "error",
    "cosine",
    "m",
    "q",
    "kappa",
    "train_loss",
    "test_error",
    "wrong_well",
    "residual",
    "unstable_mass",
    "converged",
)
_SPECTRAL_FIELDS = ("cosine2", "top_eigenvalue", "bulk_edge", "has_outlier", "lam_star", "lam_bar")


# --------------------------------------------------------------------------------------
# describing settings (JSON, hash)


def describe(obj):
    """A JSON-able, exact description of a setting (Equinox modules field by field,
    floats with full precision): what goes into the settings hash and the outputs."""
    if isinstance(obj, eqx.Module):
        out = {"type": type(obj).__name__}
        for f in dataclasses.fields(obj):
            out[f.name] = describe(getattr(obj, f.name))
        return out
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, (jax.Array, np.ndarray)):
        if jax.dtypes.issubdtype(obj.dtype, jax.dtypes.prng_key):
            return np.asarray(jax.random.key_data(obj)).tolist()
        return np.asarray(obj).tolist()
    if isinstance(obj, dict):
        return {str(k): describe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [describe(v) for v in obj]
    return repr(obj)


def settings_hash(settings: dict) -> str:
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------
# the grid


def preprocessing_parameter(preprocessing) -> str:
    """The name of the (first) float field of a preprocessing: `tau` for `Trimmed` and
    `Clipped`, `clip` for `LuoAlghamdiLu(clip=...)`, `alpha` for `MondelliMontanari(alpha)`."""
    for f in dataclasses.fields(preprocessing):
        v = getattr(preprocessing, f.name)
        if f.metadata.get("static", False) or v is None or isinstance(v, (bool, str)):
            continue
        if isinstance(v, (int, float, np.floating, jax.Array, np.ndarray)) and np.ndim(v) == 0:
            return f.name
    raise ValueError(
        f"{type(preprocessing).__name__} has no numeric parameter to sweep (for "
        "LuoAlghamdiLu pass clip=..., for MondelliMontanari pass alpha=...)"
    )


def _axis_values(name: str, values) -> np.ndarray:
    if isinstance(values, (str, bytes)):
        raise ValueError(f"the {name} axis must be numbers, got the string {values!r}")
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the {name} axis must be a 1-d sequence of numbers: {err}") from None
    if arr.ndim != 1:
        raise ValueError(
            f"the {name} axis must be 1-d, got shape {arr.shape} (the grid is "
            "the product of the axes: pass each axis separately)"
        )
    if arr.size == 0:
        raise ValueError(f"the {name} axis is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"the {name} axis has a non-finite value")
    positive = {"alpha": True, "step_size": True, "lam": False}
    if name in positive:
        bad = arr <= 0 if positive[name] else arr < 0
        if bad.any():
            sign = "> 0" if positive[name] else ">= 0"
            raise ValueError(f"every {name} must be {sign}, got {arr[bad][0]}")
    return arr


ROOTS = ("problem", "algorithm", "init")
_SHORT = {
    "alpha": ("problem", ("alpha",)),
    "lam": ("problem", ("regulariser", "lam")),
    "step_size": ("algorithm", ("step_size",)),
}


def axis_path(name: str, prep_field: str | None = None) -> tuple[str, tuple[str | None, ...]]:
    """`(root, attributes)` of an axis: a short name (`alpha`, `lam`, `step_size`, `prep`)
    or a path into the settings such as `"algorithm.momentum"` or
    `"init.preprocessing.tau"` (roots: `problem`, `algorithm`, `init`)."""
    if name in _SHORT:
        return _SHORT[name]
    if name == "prep":
        return "prep", (prep_field,)
    root, _, rest = name.partition(".")
    if root not in ROOTS or not rest:
        raise ValueError(
            f"unknown sweep axis {name!r}: use alpha, lam, step_size, prep, or a path such as "
            "'algorithm.momentum', 'problem.model.noise' or 'init.preprocessing.tau'"
        )
    return root, tuple(rest.split("."))


def _get(obj, attrs):
    for a in attrs:
        obj = getattr(obj, a)
    return obj


def _replace(obj, attrs, value, *, check: bool = False):
    """`obj` with the field at `attrs` set to `value`; with `check`, the module that
    owns the field is rebuilt so that its own checks (`__check_init__`) run."""
    if not check:
        return eqx.tree_at(lambda o: _get(o, attrs), obj, value)
    owner = _get(obj, attrs[:-1])
    fields = {f.name: getattr(owner, f.name) for f in dataclasses.fields(owner) if f.init}
    rebuilt = type(owner)(**{**fields, attrs[-1]: value})
    return rebuilt if len(attrs) == 1 else eqx.tree_at(lambda o: _get(o, attrs[:-1]), obj, rebuilt)


def _set(tree_tuple, name: str, value, prep_field: str | None, *, check: bool = False):
    problem, algorithm, init, prep = tree_tuple
    root, attrs = axis_path(name, prep_field)
    if root == "problem":
        problem = _replace(problem, attrs, value, check=check)
    elif root == "algorithm":
        algorithm = _replace(algorithm, attrs, value, check=check)
    elif root == "prep":
        prep = _replace(prep, attrs, value, check=check)
        if init is not None and isinstance(getattr(init, "preprocessing", None), eqx.Module):
            init = eqx.tree_at(lambda i: i.preprocessing, init, prep)
    else:
        init = _replace(init, attrs, value, check=check)
        if attrs[0] == "preprocessing" and prep is not None:
            prep = init.preprocessing
    return problem, algorithm, init, prep


# --------------------------------------------------------------------------------------
# one point of each engine


def _dmft_point(problem, algorithm, init, prep, key, num_samples, num_replicas, estimator):

    del prep
    keys = jax.random.split(key, num_replicas)
    obs, _ = jax.vmap(
        lambda k: dmft_replica(
            problem, algorithm, init, key=k, num_samples=num_samples, estimator=estimator
        )
    )(keys)
    norm = obs["norm"]
    ok = jnp.all(jnp.isfinite(norm) & (jnp.abs(norm) <= DIVERGENCE_NORM), axis=-1)  # [R]
    n_ok = jnp.sum(ok)
    w = ok.astype(norm.dtype)[:, None]
    out = {"num_diverged": num_replicas - n_ok, "diverged": n_ok == 0}
    for name in OBSERVABLES:
        c = jnp.where(ok[:, None], obs[name], 0.0)
        mean = jnp.sum(w * c, axis=0) / jnp.maximum(n_ok, 1)
        var = jnp.sum(w * (c - mean) ** 2, axis=0) / jnp.maximum(n_ok - 1, 1)
        se = jnp.where(n_ok > 1, jnp.sqrt(var / jnp.maximum(n_ok, 1)), jnp.nan)
        mean = jnp.where(n_ok > 0, mean, jnp.nan)
        out["curve_" + name] = mean
        out["curve_" + name + "_se"] = se
        out[name] = mean[-1]
        out[name + "_se"] = se[-1]
    return out


def _fixed_point_point(problem, algorithm, init, prep, key, num_samples, num_replicas, estimator):
    from ._fixed_point import fixed_point

    del algorithm, init, prep, key, num_samples, num_replicas, estimator
    fp = fixed_point(problem, warn=False)
    out = {k: getattr(fp, k) for k in _FIXED_POINT_FIELDS}
    out["valid"] = fp.valid
    return out


def _spectral_point(problem, algorithm, init, prep, key, num_samples, num_replicas, estimator):
    from ._spectral import spectral_theory

    del algorithm, init, key, num_samples, num_replicas, estimator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        th = spectral_theory(problem, prep)
    return {k: getattr(th, k) for k in _SPECTRAL_FIELDS}


def _check_devices(devices) -> list:
    """`None` (every device of this process), a platform name (`"cpu"`, `"gpu"`), or JAX
    devices of this process (in a multi-process run each process shards its own part of
    the grid over its own devices)."""
    if devices is None:
        return list(jax.local_devices())
    if isinstance(devices, str):
        try:
            return list(jax.local_devices(backend=devices))
        except RuntimeError as err:
            raise ValueError(
                f"devices={devices!r}: no such platform here "
                f"(this process has {sorted({d.platform for d in jax.devices()})})"
            ) from err
    try:
        devices = list(devices)
    except TypeError:
        raise ValueError(
            f"devices must be None, a platform name or a list of JAX devices, got {devices!r}"
        ) from None
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise ValueError(
            f"devices must be a non-empty list of JAX devices (jax.devices()), got {devices!r}"
        )
    foreign = [d for d in devices if d.process_index != jax.process_index()]
    if foreign:
        raise ValueError(
            f"devices {foreign} belong to other processes; each process of a "
            "multi-process sweep passes its own (jax.local_devices())"
        )
    return devices


def _barrier(name: str) -> None:
    """Wait for every process of a multi-process run (`jax.distributed`); nothing in a
    single process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _my_points(todo: np.ndarray, batch_size: int) -> np.ndarray:
    """This process's share of the missing points: blocks of `batch_size` consecutive
    missing points, dealt round-robin over the processes (every process sees the same
    `todo`, read after a barrier, so the shares are disjoint and cover it)."""
    me, count = jax.process_index(), jax.process_count()
    if count == 1:
        return todo
    blocks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    mine = blocks[me::count]
    return np.concatenate(mine) if mine else todo[:0]


def sweep_quantities(engine: str) -> tuple[str, ...]:
    """The names a sweep of `engine` stores per point (`SweepResult.values`), known
    before it runs: to check a requested quantity up front."""
    engine = engine.replace("-", "_")
    if engine == "dmft":
        names = ["num_diverged", "diverged"]
        for name in OBSERVABLES:
            names += [name, name + "_se"]
        return tuple(names)
    if engine == "fixed_point":
        return tuple(_FIXED_POINT_FIELDS) + ("valid",)
    if engine == "spectral":
        return tuple(_SPECTRAL_FIELDS)
    raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")


_POINT_FNS: dict[str, Callable] = {
    "dmft": _dmft_point,
    "fixed_point": _fixed_point_point,
    "spectral": _spectral_point,
}

TRACES = {"sweep": 0}


@eqx.filter_jit
def _run_local(
    engine: str,
    trees,
    indices,
    key,
    num_samples: int,
    num_replicas: int,
    estimator: str | AbstractEstimator,
    common: bool,
):
    """The points of one device: `jax.vmap` of one engine over them."""
    TRACES["sweep"] += 1
    fn = _POINT_FNS[engine]
    if common:  # common random numbers: every point sees the same seeds
        keys = jax.vmap(lambda i: key)(indices)
    else:
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)
    # arrays (the swept fields) are mapped; Python numbers (the others) stay static, as
    # some engines read them as constants (e.g. a noiseless model's quadrature)
    return eqx.filter_vmap(lambda t, k: fn(*t, k, num_samples, num_replicas, estimator))(
        trees, keys
    )


def _run_chunk(
    engine: str,
    trees,
    indices,
    key,
    num_samples: int,
    num_replicas: int,
    estimator: str | AbstractEstimator,
    sharding: NamedSharding,
    common: bool = True,
):
    r"""One chunk, laid out over the devices by `sharding` (batch axis split evenly).

    Each device runs the same single-device program (`_run_local`, compiled for the
    `batch_size` points of its shard) on its own shard, dispatched asynchronously so that
    the devices work at once; the outputs are assembled into global arrays with the same
    sharding. Compared with one SPMD program over the whole chunk, this makes a point's
    value bit-for-bit independent of the number of devices: the SPMD partitioner compiles
    the per-device computation differently (other fusions, other reduction orders) from
    the one-device program, which moves the last bits."""
    dynamic, static = eqx.partition((trees, indices), eqx.is_array)
    dynamic = jax.device_put(dynamic, sharding)
    leaves, treedef = jax.tree.flatten(dynamic)
    devices = list(sharding.mesh.devices.flat)
    outs = []
    for dev in devices:
        local = []
        for leaf in leaves:
            (shard,) = [s for s in leaf.addressable_shards if s.device == dev]
            local.append(shard.data)
        local_trees, local_idx = eqx.combine(jax.tree.unflatten(treedef, local), static)
        outs.append(
            _run_local(
                engine,
                local_trees,
                local_idx,
                jax.device_put(key, dev),
                num_samples,
                num_replicas,
                estimator,
                common,
            )
        )
    n = indices.shape[0]

    def assemble(*parts):
        return jax.make_array_from_single_device_arrays(
            (n,) + parts[0].shape[1:], sharding, list(parts)
        )

    return jax.tree.map(assemble, *outs)


# --------------------------------------------------------------------------------------
# result


@dataclasses.dataclass
class SweepResult:
    r"""The outcome of `sweep`.

    - `axes`: `{name: values}` for every swept axis, in grid order.
    - `values[name]`: an array of the grid's shape per stored quantity (for the DMFT:
      every observable at the final time and its standard error `name_se`,
      `num_diverged`, `diverged`; for the fixed point and spectral engines, their
      fields).
    - `curves[name]`: the DMFT's whole curve of every observable (grid shape + `(T+1,)`),
      with `name_se`; empty for the other engines.
    - `threshold`: the weak-recovery threshold `alpha_c` of the preprocessing (a float,
      or an array over the `prep` axis), or `None`.
    - `settings`: everything that determines the result (hashed into `hash`).
    - `folder`: where the chunks live (or `None`); `computed`: points computed by this
      call (the others were read back from disk).
    """

    axes: dict
    values: dict
    curves: dict
    settings: dict
    hash: str
    threshold: float | np.ndarray | None = None
    folder: Path | None = None
    computed: int = 0
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    def rows(self) -> tuple[list[str], list[list]]:
        """A flat table: one row per grid point, the axes then every scalar quantity."""
        names = list(self.axes)
        quantities = sorted(self.values)
        header = names + quantities
        rows = []
        for idx in itertools.product(*(range(len(v)) for v in self.axes.values())):
            row = [float(self.axes[n][i]) for n, i in zip(names, idx)]
            row += [np.asarray(self.values[q][idx]).item() for q in quantities]
            rows.append(row)
        return header, rows

    def to_dict(self) -> dict:
        """Plain lists, for JSON."""
        thr = self.threshold
        return {
            "axes": {k: np.asarray(v).tolist() for k, v in self.axes.items()},
            "values": {k: np.asarray(v).tolist() for k, v in self.values.items()},
            "curves": {k: np.asarray(v).tolist() for k, v in self.curves.items()},
            "threshold": None if thr is None else np.asarray(thr).tolist(),
            "settings": self.settings,
            "hash": self.hash,
            "info": self.info,
        }


# --------------------------------------------------------------------------------------
# disk


# a temporary file's tag: this process's pid and a short hash of its host, so that a
# sweep shared by processes on several machines never takes another host's live file
# for a dead one of its own
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}@{_HOST}.tmp")


def _atomic_save_npz(path: Path, arrays: dict):
    tmp = _tmp_path(path)
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove_stale_temporaries(folder: Path):
    """Half-written files of a killed run (`.<name>.<pid>@<host>.tmp`, never a chunk:
    those are moved into place whole) are removed when their process is gone; a live
    process's (another run on the same folder) and another host's are left alone."""
    for tmp in folder.glob(".*.tmp"):
        tag = tmp.name.rsplit(".", 2)[-2]
        pid_text, _, host = tag.partition("@")
        if host and host != _HOST:
            continue  # another machine's: whether it is alive cannot be told from here
        try:
            pid = int(pid_text)
        except ValueError:
            continue
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
                continue  # alive: its write is under way
            except ProcessLookupError:
                pass
            except PermissionError:  # alive, another user's
                continue
        tmp.unlink(missing_ok=True)


def _atomic_write_text(path: Path, text: str):
    tmp = _tmp_path(path)
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _code_versions() -> str:
    """The versions that can move a stored point's bits (JSON text, stored per chunk)."""
    from ._provenance import versions

    v = versions()
    return json.dumps({k: v[k] for k in ("dmftjax", "jax", "jaxlib")}, sort_keys=True)


def _warn_other_versions(chunks: dict, folder: Path) -> None:
    """A resume across versions of dmftjax or JAX is allowed (the settings are the same)
    but said: the stored points were computed by other code."""
    here = _code_versions()
    other = sorted({v for _, _, v in chunks.values() if v != here})
    if other:
        n = sum(len(idx) for idx, _, v in chunks.values() if v != here)
        warnings.warn(
            f"sweep: {n} of the points stored in {folder} were computed with "
            f"{', '.join(other)}; this is {here}. The settings are the same, so they are "
            "kept and only the missing points are computed, but the two versions' points "
            "may differ (at least in their last bits); pass another out= to recompute "
            "every point",
            RuntimeWarning,
            stacklevel=3,
        )


def _read_chunks(folder: Path, digest: str, num_points: int):
    """Every complete chunk of this sweep in `folder`: `{file: (indices, arrays,
    versions)}` (`versions`: the code versions that computed it, `"unknown"` for a chunk
    written before they were recorded)."""
    chunks = {}
    seen = np.zeros(num_points, dtype=bool)
    for path in sorted(folder.glob("chunk-*.npz")):
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["hash"]) != digest:
                    continue
                arrays = {k: data[k] for k in data.files if k not in ("hash", "versions")}
                versions = str(data["versions"]) if "versions" in data.files else "unknown"
        except (OSError, ValueError, KeyError, EOFError) as err:  # not one of ours
            warnings.warn(
                f"sweep: skipping unreadable {path.name} ({err})", RuntimeWarning, stacklevel=3
            )
            continue
        idx = arrays.pop("indices").astype(np.int64)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= num_points or seen[idx].any():
            warnings.warn(
                f"sweep: skipping {path.name} (indices out of range or repeated)",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        seen[idx] = True
        chunks[path.name] = (idx, arrays, versions)
    return chunks


def _next_chunk_number(folder: Path) -> int:
    numbers = [
        int(p.stem.split("-")[1])
        for p in folder.glob("chunk-*.npz")
        if p.stem.split("-")[1].isdigit()
    ]
    return max(numbers, default=-1) + 1


def _check_resume_batch(folder: Path, chunks: dict, batch_size: int) -> None:
    """A resume computes the missing points with the stored chunks' `batch_size`: another
    vmap width changes the last bits of a point, and the grid would mix the two."""
    if not chunks:
        return
    try:
        stored = json.loads((folder / "manifest.json").read_text()).get("batch_size")
    except (OSError, ValueError):
        stored = None
    if stored is not None and int(stored) != batch_size:
        raise ValueError(
            f"this sweep ({folder}) was started with batch_size={stored}; resume it with "
            f"batch_size={stored} (another batch size changes the last bits of a point, "
            "~1e-14, and the grid would mix the two), or pass another out= to start afresh"
        )


def _write_manifest(
    folder: Path,
    digest: str,
    settings: dict,
    axes: dict,
    chunks: dict,
    num_points: int,
    devices: list[str],
    batch_size: int,
):
    from ._provenance import provenance

    done = sum(len(idx) for idx, _, _ in chunks.values())
    manifest = {
        "format": FORMAT_VERSION,
        "hash": digest,
        "settings": settings,
        "axes": {k: np.asarray(v).tolist() for k, v in axes.items()},
        "num_points": num_points,
        "done": done,
        "complete": done == num_points,
        "chunks": [
            {
                "file": name,
                "num_points": int(len(idx)),
                "versions": json.loads(v) if v != "unknown" else v,
            }
            for name, (idx, _, v) in sorted(chunks.items())
        ],
        "devices": devices,
        "processes": jax.process_count(),
        "batch_size": batch_size,
        "versions": json.loads(_code_versions()),
        "provenance": provenance(),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=1))


# --------------------------------------------------------------------------------------
# the sweep


def sweep(
    problem: Problem,
    algorithm=None,
    init: AbstractInit | None = None,
    *,
    alpha=None,
    lam=None,
    step_size=None,
    prep=None,
    axes: dict | None = None,
    preprocessing=None,
    engine: str = "dmft",
    num_samples: int = 1000,
    num_replicas: int = 2,
    estimator: str | AbstractEstimator = "tangent",
    key=None,
    common_random_numbers: bool = True,
    window: int | None = 40,
    batch_size: int = 8,
    out: str | os.PathLike | None = None,
    devices=None,
    threshold: bool = True,
    progress: bool = True,
    after_chunk: Callable[[int, int], None] | None = None,
) -> SweepResult:
    r"""Evaluate an engine on a grid of settings, batched with `jax.vmap`, sharded over
    devices, and (with `out`) stored chunk by chunk so that an interrupted sweep resumes.

    **Arguments:**

    - `problem`, `algorithm`, `init`: the base settings (`algorithm` and `init` are
      needed by the DMFT engine only); every swept field replaces the base value.
    - `alpha`, `lam`, `step_size`, `prep`: 1-d arrays of values for each swept axis
      (`None`: not swept). The grid is their Cartesian product, in this order.
      `prep` sets the numeric parameter of `preprocessing` (`tau` of `Trimmed`/`Clipped`,
      `clip` of `LuoAlghamdiLu`, `alpha` of `MondelliMontanari`).
    - `axes`: more axes, any numeric field by its path:
      `{"algorithm.momentum": [0.0, 0.5, 0.9], "init.preprocessing.tau": [...],
      "problem.model.noise": [...]}` (after the named ones in the grid's order). Each
      value is checked by the module that owns the field.
    - `preprocessing`: a spectral preprocessing: the `spectral` engine's `T`; for the
      other engines, the one whose weak-recovery threshold is recorded (default:
      `init.preprocessing` when `init` has one).
    - `engine`: `"dmft"` (the trajectory: `dmft_replica`, the engine of `solve_dmft`,
      with `num_replicas` replicas of `num_samples` samples, from any initialisation: a
      spectral start uses its stationary slot), `"fixed_point"` (the
      long-time limit) or `"spectral"` (the closed-form spectral start).
    - `estimator`: the DMFT's estimator (`"tangent"`, `"ibp"` or `"windowed"`, the
      long-horizon mode of `solve_dmft`, with `window` lags).
    - `key`: a `jax.random` key. With `common_random_numbers` (default) every point uses
      `key` itself, so neighbouring points share their Monte Carlo noise and differences
      across the grid (the shape of a curve, an argmin) are far less noisy than the
      points; otherwise point `i` (flat index in the grid) uses
      `jax.random.fold_in(key, i)`, independent draws. Either way a point's value does
      not depend on which points share its chunk, nor on the devices.
    - `batch_size`: points per device per chunk (a chunk holds `batch_size` times the
      device count); one compilation serves every chunk. A point's last bits (~1e-14)
      depend on it, so a resume with another `batch_size` is refused.
    - `out`: a folder; the chunks go to `out/sweep-<hash>/`. `None`: nothing is written.
    - `devices`: the devices to shard over: a list of this process's JAX devices or a
      platform name (`"cpu"`, `"gpu"`); default: `jax.local_devices()`. Under
      `jax.distributed` (several processes) each process shards its share of the grid
      over its own devices, and `out` is required (see the module's description).
    - `threshold`: compute the weak-recovery threshold when a preprocessing is known.
    - `progress`: show a progress bar (tqdm) over points.
    - `after_chunk`: called as `after_chunk(chunk_number, points_done)` after each chunk
      is safely on disk (a hook for tests and monitoring).

    **Returns:** a `SweepResult`.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    check_problem(problem)
    num_samples = check_int("num_samples", num_samples, 2)
    num_replicas = check_int("num_replicas", num_replicas, 2)
    batch_size = check_int("batch_size", batch_size, 1)
    if key is None and engine == "dmft":
        raise ValueError("pass an explicit random key: key=jax.random.key(0)")
    if key is None:
        key = jax.random.key(0)
    check_key(key)
    if engine == "dmft":
        if not isinstance(algorithm, AbstractAlgorithm):
            raise ValueError(
                "the dmft engine needs an algorithm (e.g. GradientDescent(step_size, steps))"
            )
        if not isinstance(init, AbstractInit):
            raise ValueError(f"the dmft engine needs an initialisation, got {type(init).__name__}")
        estimator = as_estimator(estimator, window=window if estimator == "windowed" else None)
        if getattr(estimator, "handoff", None) is not None:
            raise ValueError("sweeps integrate every step: pass Windowed(window) without handoff")
        window = estimator.engine[1] if estimator.kind == "windowed" else None
        start = init.dmft_start(problem)  # the start's own checks (e.g. a spectral outlier)
        need = start.min_samples(algorithm.steps)
        if num_samples < need or (start.antithetic and num_samples % 2):
            raise ValueError(
                f"num_samples = {num_samples} must be at least {need}"
                f"{' and even' if start.antithetic else ''} for this start"
            )
        # per device: batch_size points of num_replicas replicas at once
        check_dmft_resources(
            num_samples,
            algorithm.steps + start.slots + 3,
            batch_size * num_replicas,
            estimator.engine,
        )
    if preprocessing is None and init is not None and hasattr(init, "preprocessing"):
        preprocessing = init.preprocessing
    if engine == "spectral" and preprocessing is None:
        raise ValueError("the spectral engine needs preprocessing=... (e.g. Trimmed(4.0))")
    if step_size is not None and engine != "dmft":
        raise ValueError(f"the {engine} engine has no step size: drop the step_size axis")

    given = {"alpha": alpha, "lam": lam, "step_size": step_size, "prep": prep}
    if axes is not None and not isinstance(axes, dict):
        raise ValueError(
            "axes must be a dict {path: values}, e.g. {'algorithm.momentum': [0, 0.5]}"
        )
    for name in axes or {}:
        if name in given and given[name] is not None:
            raise ValueError(f"the {name} axis is given twice")
        axis_path(name)  # a known root
    given.update(axes or {})
    axes = {k: _axis_values(k, v) for k, v in given.items() if v is not None}
    for name in axes:
        root, attrs = axis_path(name, "?")
        if root == "algorithm" and engine != "dmft":
            raise ValueError(f"the {engine} engine has no algorithm: drop the {name} axis")
        obj = {"problem": problem, "algorithm": algorithm, "init": init}.get(root)
        if root != "prep":
            try:
                leaf = _get(obj, attrs)
            except AttributeError:
                raise ValueError(f"the sweep axis {name!r} names no field of the {root}") from None
            if isinstance(leaf, eqx.Module) or isinstance(leaf, (str, bool)) or leaf is None:
                raise ValueError(f"the sweep axis {name!r} is not a number field")
    if not axes:
        raise ValueError("nothing to sweep: pass at least one of alpha, lam, step_size, prep")
    prep_field = None
    if "prep" in axes:
        if preprocessing is None:
            raise ValueError(
                "the prep axis needs a preprocessing (preprocessing=... or a SpectralInit)"
            )
        prep_field = preprocessing_parameter(preprocessing)
    # every value once through the checks of the module that owns its field (tau > 0,
    # momentum < 1, ...), before anything is traced
    checked = (problem, algorithm, init, preprocessing)
    for name, vals in axes.items():
        for v in vals:
            try:
                _set(checked, name, float(v), prep_field, check=True)
            except (ValueError, TypeError) as err:
                raise ValueError(f"the sweep axis {name} = {float(v)}: {err}") from None
    shape = tuple(len(v) for v in axes.values())
    num_points = int(np.prod(shape))

    settings = {
        "engine": engine,
        "problem": describe(problem),
        "algorithm": describe(algorithm) if engine == "dmft" else None,
        "init": describe(init) if engine == "dmft" else None,
        "preprocessing": describe(preprocessing),
        "prep_field": prep_field,
        "axes": {k: v.tolist() for k, v in axes.items()},
        "num_samples": num_samples if engine == "dmft" else None,
        "num_replicas": num_replicas if engine == "dmft" else None,
        "estimator": describe(estimator) if engine == "dmft" else None,
        "window": window if engine == "dmft" else None,
        "key": describe(key) if engine == "dmft" else None,
        "common_random_numbers": bool(common_random_numbers) if engine == "dmft" else None,
        "x64": bool(jax.config.jax_enable_x64),  # type: ignore[attr-defined]  # dynamic attr
        "format": FORMAT_VERSION,
    }
    digest = settings_hash(settings)

    devices = _check_devices(devices)
    n_dev = len(devices)
    # every device vmaps over exactly `batch_size` points, whatever the device count: the
    # per-device program is then the same on 1 or many devices, and so are the bits.
    chunk_len = batch_size * n_dev
    mesh = Mesh(np.array(devices), ("points",))
    sharding = NamedSharding(mesh, PartitionSpec("points"))
    device_names = [str(d) for d in devices]

    me, processes = jax.process_index(), jax.process_count()
    if processes > 1 and out is None:
        raise ValueError(
            f"a sweep over {processes} processes (jax.distributed) needs out=: "
            "a folder every process can read and write, where each stores its "
            "chunks and from which each assembles the whole grid"
        )
    folder = None
    chunks: dict = {}
    if out is not None:
        folder = Path(out) / f"sweep-{digest}"
        tag = f"dmftjax-sweep-{digest}"
        if me == 0:
            folder.mkdir(parents=True, exist_ok=True)
            _remove_stale_temporaries(folder)
        _barrier(f"{tag}-open")
        chunks = _read_chunks(folder, digest, num_points)
        _check_resume_batch(folder, chunks, batch_size)
        _warn_other_versions(chunks, folder)
        _barrier(f"{tag}-read")  # every process has the same view before any writes
        if me == 0:
            _write_manifest(
                folder, digest, settings, axes, chunks, num_points, device_names, batch_size
            )

    done = np.zeros(num_points, dtype=bool)
    for idx, _, _ in chunks.values():
        done[idx] = True
    todo = _my_points(np.flatnonzero(~done), batch_size)

    base = (
        problem,
        algorithm if engine == "dmft" else None,
        init if engine == "dmft" else None,
        preprocessing,
    )
    if prep_field is not None:
        base = _set(base, "prep", float(axes["prep"][0]), prep_field)
    grid_values = {k: jnp.asarray(v) for k, v in axes.items()}

    def chunk_inputs(indices: np.ndarray):
        padded = np.concatenate([indices, np.full(chunk_len - len(indices), indices[-1])])
        multi = np.unravel_index(padded, shape)
        # array fields are mapped over the batch: broadcast the unswept ones
        trees = jax.tree.map(
            lambda x: jnp.broadcast_to(x, (chunk_len,) + jnp.shape(x)) if eqx.is_array(x) else x,
            base,
        )
        for (name, vals), m in zip(grid_values.items(), multi):
            trees = _set(trees, name, vals[m], prep_field)
        return trees, jnp.asarray(padded)

    from tqdm.auto import tqdm

    computed = 0
    bar = tqdm(
        total=num_points,
        initial=num_points - len(todo),
        desc=f"sweep ({engine})",
        unit="pt",
        disable=not progress,
        leave=False,
    )
    number = _next_chunk_number(folder) if folder is not None else 0
    suffix = f"-p{me:03d}" if processes > 1 else ""  # each process its own file names
    versions = _code_versions()
    t0 = time.perf_counter()
    try:
        for offset in range(0, len(todo), chunk_len):
            indices = todo[offset : offset + chunk_len]
            trees, padded = chunk_inputs(indices)
            res = _run_chunk(
                engine,
                trees,
                padded,
                key,
                num_samples,
                num_replicas,
                estimator,
                sharding,
                bool(common_random_numbers),
            )
            arrays = {k: np.asarray(v)[: len(indices)] for k, v in res.items()}
            name = f"chunk-{number:05d}{suffix}.npz"
            if folder is not None:
                _atomic_save_npz(
                    folder / name,
                    dict(
                        arrays,
                        indices=indices,
                        hash=np.asarray(digest),
                        versions=np.asarray(versions),
                    ),
                )
            chunks[name] = (indices, arrays, versions)
            if folder is not None and processes == 1:
                _write_manifest(
                    folder, digest, settings, axes, chunks, num_points, device_names, batch_size
                )
            computed += len(indices)
            bar.update(len(indices))
            if after_chunk is not None:
                after_chunk(number, num_points - len(todo) + computed)
            number += 1
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    if processes > 1:  # every process's chunks are on disk: read them all back
        assert folder is not None  # several processes need out= (refused above otherwise)
        _barrier(f"{tag}-done")
        chunks = _read_chunks(folder, digest, num_points)
        if me == 0:
            _write_manifest(
                folder, digest, settings, axes, chunks, num_points, device_names, batch_size
            )

    # assemble: every point exactly once
    count = np.zeros(num_points, dtype=np.int64)
    names = next(iter(chunks.values()))[1].keys()
    flat = {}
    for idx, arrays, _ in chunks.values():
        count[idx] += 1
        for k in names:
            if k not in flat:
                v = arrays[k]
                fill = np.nan if np.issubdtype(v.dtype, np.floating) else 0
                flat[k] = np.full((num_points,) + v.shape[1:], fill, dtype=v.dtype)
            flat[k][idx] = arrays[k]
    if not np.all(count == 1):
        raise RuntimeError(f"sweep: {int((count != 1).sum())} points are missing or repeated")
    values: dict = {}
    curves: dict = {}
    for k, v in flat.items():
        v = v.reshape(shape + v.shape[1:])
        (curves if k.startswith("curve_") else values)[k.removeprefix("curve_")] = v

    thr = None
    if threshold and preprocessing is not None:
        thr = _thresholds(problem, preprocessing, axes.get("prep"), prep_field)
    info = dict(
        num_points=num_points,
        computed=computed,
        devices=device_names,
        chunk_len=chunk_len,
        seconds=elapsed,
        process=me,
        processes=processes,
    )
    if "num_diverged" in values:  # replicas dropped from a point's means are reported
        dropped = np.asarray(values["num_diverged"])
        info.update(
            points_with_diverged_replicas=int((dropped > 0).sum()),
            points_all_diverged=int(np.asarray(values["diverged"]).sum()),
        )
        if (dropped > 0).any():
            warnings.warn(
                f"sweep: {info['points_with_diverged_replicas']} of {num_points} points had "
                f"diverged replicas ({info['points_all_diverged']} had only diverged ones); "
                "their means are over the other replicas (values['num_diverged'] per point)",
                RuntimeWarning,
                stacklevel=2,
            )
    if "valid" in values:
        info.update(points_invalid=int((~np.asarray(values["valid"]).astype(bool)).sum()))
    return SweepResult(
        axes=axes,
        values=values,
        curves=curves,
        settings=settings,
        hash=digest,
        threshold=thr,
        folder=folder,
        computed=computed,
        info=info,
    )


def _thresholds(problem, preprocessing, prep_values, prep_field):
    try:
        from ._spectral import weak_recovery_threshold
    except ImportError:  # spectral theory not available in this build
        return None

    def one(prep):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                return float(weak_recovery_threshold(problem.model, prep))
            except (ValueError, TypeError):
                return math.nan

    if prep_values is None:
        return one(preprocessing)
    fields = {f.name: getattr(preprocessing, f.name) for f in dataclasses.fields(preprocessing)}
    return np.asarray(
        [one(type(preprocessing)(**{**fields, prep_field: float(v)})) for v in prep_values]
    )


__all__ = ["sweep", "SweepResult", "describe", "settings_hash", "preprocessing_parameter"]
