"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import os
import resource
import statistics
import time
from pathlib import Path

import jax

RESULTS = Path(__file__).parent / "results"


def timeit(fn, repeats: int = 3):
    """Run once to compile, then `repeats` times; returns (median, min, max) seconds."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write(name: str, payload: dict):
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)
    print(f"wrote {path}")


def fmt(t):
    med, lo, hi = t
    return f"{med:8.3f} s [{lo:.3f}, {hi:.3f}]"
