"""The result type every engine returns."""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._quadrature import population_loss

OBSERVABLES = ("overlap", "norm", "error", "cosine", "train_loss", "test_error", "wrong_well")

# what each observable means, in words (recorded in every CLI output)
MEANINGS = {
    "overlap": "<theta*, theta^t>/d",
    "norm": "|theta^t|^2/d",
    "error": "|theta^t - theta*|^2/d, minimised over the sign of theta* for even links",
    "cosine": "<theta*, theta^t>/(|theta*| |theta^t|), absolute for even links",
    "train_loss": "mean per-sample loss on the training data (without the regulariser)",
    "test_error": "expected per-sample loss on a fresh sample",
    "wrong_well": "fraction of samples with y > 0 whose r^t sits in the wrong well of a "
    "double-well loss (0 for single-well losses)",
}


class Trajectory(eqx.Module):
    r"""Observables against time, each with its standard error.

    `values[name]` and `stderr[name]` are arrays over `times` for every name in
    `OBSERVABLES`:

    - `overlap` `<theta*, theta^t>/d`, `norm` `|theta^t|^2/d`;
    - `error` `min_{+-} |theta^t -+ theta*|^2/d` (the sign is minimised for even links);
    - `cosine` (absolute for even links);
    - `train_loss` mean per-sample loss on the training data;
    - `test_error` expected loss on a fresh sample;
    - `wrong_well` fraction of samples with `y > 0` whose `r` sits in the wrong well of
      a double-well loss (zero for single-well losses).

    `stderr` is the Monte Carlo standard error (across simulator seeds or DMFT
    replicas). The DMFT also fills `kernels` (`C`, `R`, `Gamma`, `Gamma_star`, `Cu`
    on the `(T+1) x (T+1)` grid). `diverged` is True when every run blew up;
    `diverged_at` is then the first step with a non-finite or exploding norm (above 1e8)
    in some run, and the curves, standard errors, kernels and laws stop just before it:
    `times` is `0, ..., diverged_at - 1` and nothing returned is NaN or inf
    (`info["steps_run"]` is the number of steps asked for). Runs that diverged while
    others did not are left out of the means and reported in `info` (`num_diverged`,
    `diverged_runs`, `mean_all_runs`) with a warning.
    """

    times: Float[Array, " T"]
    values: dict
    stderr: dict
    source: str = eqx.field(static=True)
    kernels: dict | None = None
    diverged: bool = False
    diverged_at: int | None = None
    info: dict = eqx.field(default_factory=dict)
    laws: dict | None = None

    def law(self, kind: str, t: int):
        """The law of one `"row"` `(z, y, r^t)` or one `"coordinate"` `(theta*, theta^t)`
        at step `t` (see `dmftjax._laws`): an `EmpiricalLaw` (blocks = seeds or
        replicas), or for the DMFT's coordinate an exact `CoordinateLaw`. Rows (and the
        simulator's coordinates) are kept at the steps passed as `laws_at=` to the
        engine."""
        from ._laws import CoordinateLaw, EmpiricalLaw

        if kind not in ("row", "coordinate"):
            raise ValueError(f"kind must be 'row' or 'coordinate', got {kind!r}")
        t = int(t)
        if self.source == "dmft" and kind == "coordinate":
            k = self.kernels or {}
            if "A" not in k or "C" not in k or not 0 <= t < np.shape(k["C"])[0]:
                raise ValueError(f"no DMFT kernels at t = {t}")
            a, c = float(k["A"][t]), float(k["C"][t, t])
            runs = self.info.get("coordinate_runs")
            a_se = v_se = 0.0
            if runs is not None:
                ar, vr = np.asarray(runs["A"])[:, t], np.asarray(runs["V"])[:, t]
                a_se, v_se = ar.std(ddof=1) / np.sqrt(ar.size), vr.std(ddof=1) / np.sqrt(vr.size)
            return CoordinateLaw(
                a, c - a * a, self.info.get("prior", "gaussian"), time=t, A_se=a_se, V_se=v_se
            )
        if not self.laws or (kind, t) not in self.laws:
            kept = sorted({tt for (_, tt) in (self.laws or {})})
            raise ValueError(
                f"no {kind} law at t = {t}: pass laws_at=[{t}, ...] to the engine (kept: {kept})"
            )
        return EmpiricalLaw(self.laws[(kind, t)], kind=kind, time=t, source=self.source)

    def __getattr__(self, name):
        if name in OBSERVABLES:
            return self.values[name]
        if name.endswith("_se") and name[:-3] in OBSERVABLES:
            return self.stderr[name[:-3]]
        raise AttributeError(name)

    def relative_stderr(self, name: str):
        """`stderr / |value|` of one observable."""
        return self.stderr[name] / jnp.abs(self.values[name])

    def to_dict(self) -> dict:
        """Plain lists, for JSON."""
        out = {
            "source": self.source,
            "times": np.asarray(self.times).tolist(),
            "diverged": bool(self.diverged),
            "diverged_at": self.diverged_at,
            "values": {k: np.asarray(v).tolist() for k, v in self.values.items()},
            "stderr": {k: np.asarray(v).tolist() for k, v in self.stderr.items()},
            "info": {
                k: (np.asarray(v).tolist() if hasattr(v, "shape") else v)
                for k, v in self.info.items()
            },
        }
        return out


def summarise(curves: dict, source: str, finite_mask=None, **kwargs) -> Trajectory:
    """Mean and standard error over the leading (replica or seed) axis of each curve."""
    values, stderr = {}, {}
    for name in OBSERVABLES:
        c = np.asarray(curves[name])
        if finite_mask is not None and finite_mask.any():
            c = c[finite_mask]
        n = c.shape[0]
        values[name] = jnp.asarray(c.mean(axis=0))
        se = c.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(c.shape[1:], np.nan)
        stderr[name] = jnp.asarray(se)
    if n < 2:
        warnings.warn(
            f"{source}: a single run is left, so there is no standard error (NaN)",
            RuntimeWarning,
            stacklevel=3,
        )
    times = jnp.arange(values["error"].shape[0])
    return Trajectory(times=times, values=values, stderr=stderr, source=source, **kwargs)


def first_divergence(norm_curves: np.ndarray, threshold: float = 1e8):
    """Per run: the first step whose norm is non-finite or above `threshold` (or -1)."""
    bad = ~np.isfinite(norm_curves) | (np.abs(norm_curves) > threshold)
    first = np.where(bad.any(axis=-1), bad.argmax(axis=-1), -1)
    return first


def sample_observables(problem, y, z, r, *, m, q, p=1.0):
    """Every observable of `Trajectory` from the overlap `m`, norm `q`, `p = |theta*|^2/d`
    and the per-sample `(y, z, r)` (rows of the simulator, samples of the DMFT)."""
    model, loss = problem.model, problem.loss
    m_eff = jnp.abs(m) if model.even else m
    sign = jnp.where(m >= 0, 1.0, -1.0) if model.even else 1.0
    return {
        "overlap": m,
        "norm": q,
        "error": q - 2 * m_eff + p,
        "cosine": m_eff / jnp.sqrt(q * p),
        "train_loss": jnp.mean(jax.vmap(loss)(y, r)),
        "test_error": population_loss(model, loss, p, m, q),
        "wrong_well": jnp.mean(jax.vmap(loss.wrong_well)(y, r, sign * z).astype(r.dtype)),
    }


def finish(curves: dict, source: str, info: dict) -> Trajectory:
    first = first_divergence(curves["norm"])
    ok = first < 0
    info = dict(info)
    info["num_diverged"] = int((~ok).sum())
    info["diverged_runs"] = np.flatnonzero(~ok).tolist()
    info["diverged_at_runs"] = first[~ok].tolist()
    # per seed / replica: heavy tails (rows trapped in a wrong well) show up here first
    info["final_error_runs"] = np.asarray(curves["error"])[:, -1].tolist()
    info["final_runs"] = {name: np.asarray(curves[name])[:, -1].tolist() for name in OBSERVABLES}
    if not ok.all():
        # what the means over every run would be, up to the first divergence (after it
        # they are not finite): the survivors' means are conditioned on not diverging
        t_end = int(first[~ok].min())
        info["mean_all_runs"] = {
            name: np.asarray(curves[name])[:, :t_end].mean(axis=0).tolist() for name in OBSERVABLES
        }
        if ok.any():
            msg = (
                f"{source}: {int((~ok).sum())} of {ok.size} runs diverged (first at step "
                f"{t_end}); the means are over the {int(ok.sum())} that did not (biased "
                "towards them: info['mean_all_runs'] has the means over every run up to that "
                "step)"
            )
        else:
            msg = (
                f"{source}: every run diverged (the first at step {t_end}); the curves "
                f"stop at step {t_end - 1}, the last finite one"
            )
        msg += ". The step size is too large for this problem (see the per-row instability"
        msg += " in the docs)"
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
    if ok.any():
        return summarise(curves, source, finite_mask=ok, info=info)
    # every run diverged: the curves stop before the first step at which any run blew up
    # (the last finite one), so no NaN or inf is returned and every observable (such as
    # `wrong_well`, which NaN comparisons would set to 0) is one of a finite state
    t_end = int(first.min())
    finite = np.all(
        [np.isfinite(np.asarray(curves[name])[:, :t_end]).all(axis=0) for name in OBSERVABLES],
        axis=0,
    )
    if not finite.all():
        t_end = max(int(np.argmin(finite)), 1)
    cut = {name: np.asarray(curves[name])[:, :t_end] for name in OBSERVABLES}
    info["steps_run"] = int(np.asarray(curves["norm"]).shape[-1])
    return summarise(cut, source, info=info, diverged=True, diverged_at=t_end)


def on_time_axis(traj: Trajectory, times) -> Trajectory:
    """`traj` with the algorithm's own times (gradient flow: physical time), cut to the
    length of its curves."""
    times = jnp.asarray(times, dtype=float)[: traj.times.shape[0]]
    return eqx.tree_at(lambda t: t.times, traj, times)


def cut_at_divergence(traj: Trajectory) -> Trajectory:
    """A diverged trajectory's kernels and laws cut to its curves' length (`diverged_at`
    steps), like its curves; the identity for a run that did not diverge."""
    if not traj.diverged:
        return traj
    t_end, full = traj.diverged_at, traj.info["steps_run"]

    def cut(x):
        x = np.asarray(x)
        return jnp.asarray(x[tuple(slice(0, t_end) if n == full else slice(None) for n in x.shape)])

    if traj.kernels is not None:
        traj = eqx.tree_at(lambda t: t.kernels, traj, {k: cut(v) for k, v in traj.kernels.items()})
    if "coordinate_runs" in traj.info:
        info = dict(
            traj.info,
            coordinate_runs={
                k: np.asarray(v)[:, :t_end] for k, v in traj.info["coordinate_runs"].items()
            },
        )
        traj = eqx.tree_at(lambda t: t.info, traj, info)
    if traj.laws is not None:
        traj = eqx.tree_at(
            lambda t: t.laws, traj, {k: v for k, v in traj.laws.items() if k[1] < t_end}
        )
    return traj
