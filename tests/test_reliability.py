"""Property-based bad input (hypothesis): every constructor and entry point either refuses
a value with a ValueError/TypeError before anything is traced, or the value was valid;
divergence is a result (finite curves); precision and resumes are explicit."""

import math
import pathlib
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dmftjax as dj
from dmftjax import _dmft, _simulate

sys.path.insert(0, str(pathlib.Path(__file__).parent))

SETTINGS = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

# anything a hostile user may pass where a number is meant
ANY_VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.just([1.0, 2.0]),
    st.just(np.ones(2)),
    st.just(np.float64("nan")),
    st.just(np.bool_(True)),
    st.just(1 + 2j),
)


def is_real(v) -> bool:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.floating, np.integer)):
        return False
    return math.isfinite(float(v))


def positive(v):
    return is_real(v) and float(v) > 0


def nonnegative(v):
    return is_real(v) and float(v) >= 0


# (constructor of one value, whether that value is valid)
FIELDS = {
    "Problem.alpha": (
        lambda v: dj.Problem(dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=v),
        positive,
    ),
    "Ridge.lam": (
        lambda v: dj.Problem(dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), 3.0, dj.Ridge(v)),
        nonnegative,
    ),
    "PhaseRetrieval.noise": (
        lambda v: dj.Problem(dj.PhaseRetrieval(v), dj.WirtingerLoss(), 3.0),
        nonnegative,
    ),
    "GradientDescent.step_size": (lambda v: dj.GradientDescent(v, 5), positive),
    "GradientDescent.steps": (
        lambda v: dj.GradientDescent(0.1, v),
        lambda v: (
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= 1
        ),
    ),
    "HeavyBall.momentum": (
        lambda v: dj.HeavyBall(0.1, v, 5),
        lambda v: nonnegative(v) and float(v) < 1,
    ),
    "InformedInit.overlap": (
        lambda v: dj.InformedInit(v, 2.0),
        lambda v: is_real(v) and abs(float(v)) < math.sqrt(2.0),
    ),
    "InformedInit.norm": (
        lambda v: dj.InformedInit(0.1, v),
        lambda v: positive(v) and 0.01 < float(v),
    ),
    "Trimmed.tau": (lambda v: dj.Trimmed(v), positive),
    "Clipped.tau": (lambda v: dj.Clipped(v), positive),
    "LuoAlghamdiLu.clip": (
        lambda v: dj.LuoAlghamdiLu(v),
        lambda v: v is None or (is_real(v) and float(v) < 1),
    ),
    "MondelliMontanari.alpha": (
        lambda v: dj.MondelliMontanari(v),
        lambda v: v is None or positive(v),
    ),
    "LinearModel.noise": (lambda v: dj.LinearModel(v), nonnegative),
    "ProbitModel.noise": (lambda v: dj.ProbitModel(v), nonnegative),
    "LogisticModel.scale": (lambda v: dj.LogisticModel(v), positive),
    "Windowed.window": (
        lambda v: dj.Windowed(v),
        lambda v: (
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= 2
        ),
    ),
    "Windowed.handoff": (lambda v: dj.Windowed(32, v), lambda v: v is None or positive(v)),
}


@pytest.mark.parametrize("field", sorted(FIELDS))
@SETTINGS
@given(value=ANY_VALUE)
def test_a_field_is_refused_or_valid(field, value):
    make, valid = FIELDS[field]
    try:
        made = make(value)
    except (ValueError, TypeError) as err:
        assert str(err), "a refusal says why"
        if valid(value) and field not in ("InformedInit.norm",):
            raise AssertionError(f"{field} = {value!r} is valid but was refused: {err}")
        return
    assert valid(value), f"{field} = {value!r} was accepted: {made}"


GOOD = (
    dj.Problem(dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), 3.0, dj.Ridge(0.05)),
    dj.GradientDescent(0.05, 10),
    dj.InformedInit(0.5, 1.0),
)
BAD_COUNT = st.one_of(
    st.integers(max_value=1),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.integers(min_value=10**10, max_value=10**13),
)


@SETTINGS
@given(name=st.sampled_from(["num_samples", "num_replicas"]), value=BAD_COUNT)
def test_bad_dmft_sizes_are_refused_before_tracing(name, value):
    before = dict(_dmft.TRACES)
    with pytest.raises(ValueError):
        dj.solve_dmft(*GOOD, **{"num_samples": 200, name: value}, key=jax.random.key(0))
    assert _dmft.TRACES == before


@SETTINGS
@given(name=st.sampled_from(["dim", "num_seeds"]), value=BAD_COUNT)
def test_bad_simulation_sizes_are_refused_before_tracing(name, value):
    before = dict(_simulate.TRACES)
    with pytest.raises(ValueError):
        dj.simulate(*GOOD, **{"dim": 50, "num_seeds": 2, name: value}, key=jax.random.key(0))
    assert _simulate.TRACES == before


@SETTINGS
@given(
    value=st.one_of(
        st.integers(max_value=3),
        st.integers(min_value=1025, max_value=10**10),
        st.floats(),
        st.booleans(),
    )
)
def test_bad_quadrature_sizes_are_refused(value):
    with pytest.raises(ValueError, match="num_nodes"):
        dj.fixed_point(GOOD[0], num_nodes=value)


@SETTINGS
@given(
    key=st.one_of(
        st.integers(),
        st.none(),
        st.text(max_size=3),
        st.just(np.zeros(2)),
        st.just(jax.random.split(jax.random.key(0), 2)),
    )
)
def test_keys_that_are_not_keys_are_refused(key):
    with pytest.raises(ValueError, match="key"):
        dj.solve_dmft(*GOOD, num_samples=200, key=key)


KEY = jax.random.key(0)
HUGE = {  # each used to abort the process inside XLA (SIGABRT) or fail after compiling
    "tune_step_size": lambda: dj.tune_step_size(
        GOOD[0], GOOD[2], eta0=0.05, horizon=10, num_samples=10**10, key=KEY
    ),
    "tune_algorithm": lambda: dj.tune_algorithm(*GOOD, num_samples=10**10, key=KEY),
    "spectral_simulation dim": lambda: dj.spectral_simulation(
        GOOD[0], dj.Trimmed(4.0), dim=10**5, num_seeds=2, key=KEY
    ),
    "spectral_simulation seeds": lambda: dj.spectral_simulation(
        GOOD[0], dj.Trimmed(4.0), dim=50, num_seeds=10**10, key=KEY
    ),
    "hessian_check seeds": lambda: dj.hessian_check(*GOOD, dim=50, num_seeds=10**10, key=KEY),
    "simulate seeds": lambda: dj.simulate(*GOOD, dim=50, num_seeds=10**10, key=KEY),
}


@pytest.mark.parametrize("name", sorted(HUGE))
def test_huge_sizes_in_more_entry_points_are_refused_before_compiling(name):
    before = (dict(_dmft.TRACES), dict(_simulate.TRACES))
    with pytest.raises(ValueError, match="2\\^31|GiB"):
        HUGE[name]()
    assert (dict(_dmft.TRACES), dict(_simulate.TRACES)) == before


def test_single_refusals_name_the_argument():
    key, fp = jax.random.key(0), dj.fixed_point(GOOD[0])
    cases = [
        (lambda: dj.Problem(dj.LinearModel(0.1), dj.LogisticLoss(), 3.0), "labels"),
        (
            lambda: dj.simulate(
                dj.Problem(dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), 0.01),
                *GOOD[1:],
                dim=20,
                num_seeds=2,
                key=key,
            ),
            "rows",
        ),
        (lambda: dj.grid_search(lambda x: x, [1.0, math.nan]), "grid"),
        (lambda: dj.grid_search(lambda x: math.nan, [1.0, 2.0]), "not finite"),
        (
            lambda: dj.sweep(
                *GOOD, alpha=[2.0, 3.0], num_samples=64, key=key, progress=False, devices="tpu"
            ),
            "devices",
        ),
        (
            lambda: dj.sweep(
                *GOOD, alpha=[2.0, 3.0], num_samples=64, key=key, progress=False, devices=[1]
            ),
            "devices",
        ),
        (
            lambda: dj.top_eigenpair(jnp.ones((6, 3)).at[0, 0].set(jnp.nan), jnp.ones(6), key=key),
            "non-finite",
        ),
        (lambda: dj.hessian_edges(GOOD[0], fp, tail=math.nan), "tail"),
        (lambda: dj.hessian_edges(GOOD[0], "fp"), "FixedPoint"),
        (lambda: dj.hessian_check(*GOOD, dim=10**6, key=key), "GiB|2\\^31"),
        (lambda: dj.measured_rate(np.array([1.0, 0.5, math.nan, 0.1, 0.05, 0.01])), "non-finite"),
        (lambda: dj.measured_rate(np.logspace(0, 60, 20)), "diverged"),
        (lambda: dj.plot_tuning([{"grid": [1, 2]}]), "missing"),
        (lambda: dj.plot_tuning({"grid": [1, 2]}), "list"),
    ]
    for make, match in cases:
        with pytest.raises(ValueError, match=match):
            make()
    # a numpy integer is a valid number of steps, and becomes a Python int (static)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert type(dj.GradientDescent(0.1, np.int64(5)).steps) is int

    # a binary model of the user's own, written with sign(), passes the label check
    class SignModel(dj.AbstractModel):
        smooth = False

        def link(self, z, eps):
            return jnp.sign(z + eps)

    dj.Problem(SignModel(), dj.LogisticLoss(), 3.0)


def test_float32_is_refused_with_the_fix():
    problem = GOOD[0]
    jax.config.update("jax_enable_x64", False)
    try:
        for call in (
            lambda: dj.fixed_point(problem),
            lambda: dj.solve_dmft(*GOOD, num_samples=200, key=jax.random.key(0)),
            lambda: dj.spectral_theory(problem, dj.Trimmed(4.0)),
        ):
            with pytest.raises(ValueError, match="jax_enable_x64"):
                call()
    finally:
        jax.config.update("jax_enable_x64", True)


def test_a_diverged_run_returns_finite_curves_that_stop_at_the_divergence():
    prob = dj.Problem(dj.PhaseRetrieval(0.0), dj.WirtingerLoss(), 3.0, dj.Ridge(0.05))
    alg, init = dj.GradientDescent(0.3, 40), dj.InformedInit(0.5, 1.0)
    for run in (
        lambda: dj.solve_dmft(prob, alg, init, num_samples=500, key=jax.random.key(0)),
        lambda: dj.simulate(
            prob, alg, init, dim=200, num_seeds=2, key=jax.random.key(0), kernels=True
        ),
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            traj = run()
        # one warning, ours: no overflow or invalid-value warnings leak through
        assert [
            str(w.message)[:30] for w in caught if "every run diverged" not in str(w.message)
        ] == []
        assert traj.diverged and 0 < traj.diverged_at < 40
        assert traj.times.shape == (traj.diverged_at,)
        assert traj.info["steps_run"] == 41
        for name, v in list(traj.values.items()) + list(traj.stderr.items()):
            assert v.shape == (traj.diverged_at,) and np.isfinite(v).all(), name
        for name, v in traj.kernels.items():
            assert np.isfinite(v).all() and max(np.shape(v)) == traj.diverged_at, name
        # every observable is one of a finite state: wrong_well is a fraction, the norm
        # grows up to the cut
        assert np.all((0 <= traj.wrong_well) & (traj.wrong_well <= 1))
        assert float(traj.norm[-1]) > 10 * float(traj.norm[0])
        with pytest.raises(ValueError, match="diverged"):
            dj.measured_rate(traj)


def test_a_resume_with_another_batch_size_is_refused(tmp_path):
    prob, alg, init = GOOD[0], dj.GradientDescent(0.05, 4), GOOD[2]
    kw = dict(
        alpha=[2.0, 3.0, 4.0],
        num_samples=32,
        num_replicas=2,
        key=jax.random.key(0),
        out=tmp_path,
        progress=False,
    )

    def stop(number, done):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dj.sweep(prob, alg, init, batch_size=1, after_chunk=stop, **kw)
    with pytest.raises(ValueError, match="batch_size=1"):
        dj.sweep(prob, alg, init, batch_size=2, **kw)
    res = dj.sweep(prob, alg, init, batch_size=1, **kw)
    assert res.computed == 2


def _number(text):
    try:
        return float(text)
    except ValueError:
        return None


# CLI options (command, option) and whether a text is a valid value of each
def _real(lo, strict):
    return lambda v: v is not None and math.isfinite(v) and (v > lo if strict else v >= lo)


def _count(minimum, maximum=None):
    def ok(text):
        t = text.strip().lstrip("+")
        return t.isdigit() and int(t) >= minimum and (maximum is None or int(t) <= maximum)

    return ok


CLI_OPTIONS = {
    ("predict", "--alpha"): _real(0, True),
    ("predict", "--lam"): _real(0, False),
    ("predict", "--noise"): _real(0, False),
    ("predict", "--step"): _real(0, True),
    ("predict", "--steps"): _count(1),
    ("predict", "--samples"): _count(2),
    ("simulate", "--dim"): _count(2),
    ("simulate", "--seeds"): _count(2),
    ("fixed-point", "--nodes"): _count(4, 1024),
    ("spectral", "--tau"): _real(0, True),
}
NUMERIC = {"--alpha", "--lam", "--noise", "--step", "--tau"}
CLI_TEXT = st.one_of(
    st.text(max_size=6),
    st.sampled_from(
        ["nan", "inf", "-inf", "-1", "0", "true", "5.7", "1e400", "-0.0", "0x10", "1,2", " "]
    ),
    st.floats().map(repr),
    st.integers(-(10**12), 0).map(str),
)


@SETTINGS
@given(where=st.sampled_from(sorted(CLI_OPTIONS)), text=CLI_TEXT)
def test_the_cli_refuses_a_bad_value_in_one_line_before_computing(where, text, tmp_path_factory):
    from hypothesis import assume
    from test_cli import assert_one_line_error, run

    command, option = where
    valid = CLI_OPTIONS[where]
    assume(not valid(_number(text) if option in NUMERIC else text))
    assume("\x00" not in text)
    out = tmp_path_factory.mktemp("o") / "results"
    before = dict(_dmft.TRACES)
    extra = ["--preprocessing", "trimmed"] if command == "spectral" else []
    result = run(command, *extra, f"{option}={text}", "--out", out, "-q")
    line = assert_one_line_error(result)
    assert result.exit_code in (1, 2)
    assert option.lstrip("-") in line.lower()
    assert _dmft.TRACES == before and not out.exists()
