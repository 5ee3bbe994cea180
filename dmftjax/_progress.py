"""Live progress from inside compiled loops: the time loops of the DMFT and of the
simulator call back to the host once per step (`jax.debug.callback`) when asked to, and
a tqdm bar on the host counts the calls."""

from __future__ import annotations

import contextlib
import sys
import time

import jax

_ACTIVE: list = []  # the bars being filled, innermost last


def _tick(_step) -> None:
    if _ACTIVE:
        bar = _ACTIVE[-1]
        if bar.n == 0:  # the first step: compiling is over, time the steps from here
            bar.set_description_str(bar.desc.removesuffix(" (compiling)"), refresh=False)
            bar.start_t = bar.last_print_t = time.time()
        bar.update(1)


def tick(step, enabled: bool) -> None:
    """Inside a traced time loop: one host callback per executed step when `enabled` (a
    static flag, so a run without progress compiles no callback at all)."""
    if enabled:
        jax.debug.callback(_tick, step)


@contextlib.contextmanager
def progress_bar(total: int, desc: str, enabled: bool = True):
    """A tqdm bar over `total` steps that `tick` fills while the block runs."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total,
        desc=f"{desc} (compiling)",
        unit="step",
        leave=False,
        file=sys.stderr,
        mininterval=0.2,
    )
    _ACTIVE.append(bar)
    try:
        yield bar
    finally:
        jax.effects_barrier()  # every callback of the block delivered
        _ACTIVE.remove(bar)
        bar.close()
