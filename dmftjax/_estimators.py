r"""How the DMFT estimates the sample side's responses (options as modules).

- `Tangent()`: the exact response of every sample by the adjoint recursion
  (docs/equations.md#effective-processes);
  `O(M T^3)`, `R` and `Gamma` kept, needs the loss twice differentiable in `r`.
- `IntegrationByParts()`: Gaussian integration by parts in the whitened seed basis
  (docs/equations.md#integration-by-parts); `O(M T^2)`, needs no derivative, carries a
  positive `O(1/M)` bias in the norm and keeps no `R`/`Gamma`.
- `Windowed(window=40, handoff=None)`: the long-horizon mode (docs/equations.md#estimators): the
  adjoint
  over the last `window` lags, the row contractions with the directions that never
  decay by forward tangents, an exponential tail for the rest; `O(M T (T + W^2))`,
  unbiased, `R`/`Gamma` kept. `handoff`: stop integrating once the predicted remaining
  change is below that fraction of the error, and continue at the fixed point.

Each checks its settings when constructed; `solve_dmft` also takes the names
`"tangent"`, `"ibp"` and `"windowed"` (as the command line does).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx

from ._validate import check_int, check_positive

ADJOINT_BLOCK = 8
DEFAULT_WINDOW = 40


class AbstractEstimator(eqx.Module):
    """An estimator of the DMFT's response kernels (see the module docstring)."""

    kind: ClassVar[str]

    @property
    def engine(self) -> tuple:
        """`(kind, window, handoff)`, the static description the solver reads."""
        return (self.kind, 0, None)


class Tangent(AbstractEstimator):
    """Exact per-sample responses (the adjoint recursion): the reference."""

    kind: ClassVar[str] = "tangent"


class IntegrationByParts(AbstractEstimator):
    """Gaussian integration by parts in the whitened seed basis (no derivatives)."""

    kind: ClassVar[str] = "ibp"


class Windowed(AbstractEstimator):
    """The long-horizon mode: an adjoint over the last `window` lags (rounded up to a
    multiple of 8, the solver's block; `info["window"]` reports the value used) and
    exact forward-tangent contractions; `handoff` (a fraction of the error, or `None`)
    hands off to the fixed point once the remaining change is predicted below it."""

    kind: ClassVar[str] = "windowed"
    window: int = eqx.field(static=True, default=DEFAULT_WINDOW)
    handoff: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_int("window", self.window, 2)
        if self.handoff is not None:
            check_positive("handoff", self.handoff)

    @property
    def engine(self) -> tuple:
        window = -(-self.window // ADJOINT_BLOCK) * ADJOINT_BLOCK
        return (self.kind, window, None if self.handoff is None else float(self.handoff))


_NAMES = {"tangent": Tangent, "ibp": IntegrationByParts, "windowed": Windowed}


def as_estimator(
    estimator, *, window: int | None = None, handoff: float | None = None
) -> AbstractEstimator:
    """An estimator module from a module or a name (`"tangent"`, `"ibp"`, `"windowed"`;
    `window` and `handoff` go with `"windowed"`). Anything else is an error."""
    if isinstance(estimator, AbstractEstimator):
        if window is not None or handoff is not None:
            raise ValueError(
                "window and handoff belong to the estimator module: pass "
                "Windowed(window, handoff) alone"
            )
        return estimator
    if not isinstance(estimator, str) or estimator not in _NAMES:
        raise ValueError(
            f"estimator must be Tangent(), IntegrationByParts(), Windowed(window, handoff) "
            f"or one of {sorted(_NAMES)}, got {estimator!r}"
        )
    if estimator == "windowed":
        return Windowed(DEFAULT_WINDOW if window is None else window, handoff)
    if handoff is not None:
        raise ValueError("handoff needs estimator='windowed' (the long-horizon mode)")
    return _NAMES[estimator]()


__all__ = ["AbstractEstimator", "Tangent", "IntegrationByParts", "Windowed", "as_estimator"]
