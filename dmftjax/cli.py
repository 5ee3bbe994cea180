"""The `dmftjax` command line.

Every subcommand reads its settings from flags or from a TOML file (`--config`), shows
a progress bar for each long step, and writes a figure (`--format png|pdf|svg`,
`--dpi`, `--width one|two` journal columns, `--footer/--no-footer`), a JSON file (every
curve, every setting, the package version and the random seed, and the `kind` of
result) and a CSV file into `--out`. `dmftjax plot RESULT.json` draws a result's figure
again from its JSON alone, with the same function as the subcommand. Files
are written to temporary names and moved into place only once everything has been
computed; existing results are never overwritten (the new files get the next free name,
`predict-1.json`, ...) unless `--overwrite` is given. Bad input gives a one-line error
and a non-zero exit status (set `DMFTJAX_DEBUG=1` for the traceback).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import click

# --------------------------------------------------------------------------------------
# one-line errors


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _Group(click.Group):
    """A click group whose every failure is one line on stderr and a non-zero exit."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        code = 0
        try:
            code = super().main(
                args=args,
                prog_name=prog_name or "dmftjax",
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
            code = code if isinstance(code, int) else 0
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.ctx.get_help())
            code = 0
        except click.exceptions.Exit as err:
            code = err.exit_code
        except click.ClickException as err:
            where = ""
            ctx = getattr(err, "ctx", None)
            if ctx is not None and ctx.command_path:
                where = f" ({ctx.command_path})"
            click.echo(f"Error{where}: {_one_line(err.format_message())}", err=True)
            code = err.exit_code
        except click.Abort:
            click.echo("Error: aborted", err=True)
            code = 1
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            code = 130
        except Exception as err:  # a bug or an engine failure: still one line
            if os.environ.get("DMFTJAX_DEBUG"):
                raise
            first = _one_line(str(err).strip().splitlines()[0]) if str(err).strip() else ""
            click.echo(
                f"Error: {type(err).__name__}: {first} (DMFTJAX_DEBUG=1 for the traceback)",
                err=True,
            )
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


def _fail(message: str):
    raise click.UsageError(message)


_DEFAULT = click.core.ParameterSource.DEFAULT


# --------------------------------------------------------------------------------------
# configuration files


def _all_param_names() -> set[str]:
    names = set()
    for cmd in main.commands.values():
        names |= {p.name for p in cmd.params}
    return names


def _users_of(name: str) -> str:
    return ", ".join(
        f"[{c}]" for c, cmd in sorted(main.commands.items()) if name in {p.name for p in cmd.params}
    )


def _toml_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _load_config(ctx: click.Context, param, value):
    """`--config FILE`: a TOML file whose keys are this command's options (dashes or
    underscores), at top level or in a table named after the command (a top-level key
    this command does not use is an error: put it in the table of the one that does;
    values parse exactly as the same flag on the command line); flags given on
    the command line win."""
    if value is None:
        return None
    import tomllib

    path = Path(value)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise click.BadParameter(f"{path} is not valid TOML: {err}", ctx, param) from None
    except OSError as err:
        raise click.BadParameter(f"cannot read {path}: {err.strerror}", ctx, param) from None
    cmd_name = ctx.command.name
    own = {p.name for p in ctx.command.params if p.name not in ("config", "help")}
    known_anywhere = _all_param_names()
    commands = set(main.commands)
    settings = {}
    for key, val in data.items():
        name = key.replace("-", "_")
        if isinstance(val, dict):
            if key not in commands:
                raise click.BadParameter(
                    f"{path}: unknown table [{key}] (tables are named "
                    f"after subcommands: {', '.join(sorted(commands))})",
                    ctx,
                    param,
                )
            continue
        if name in own:
            settings[name] = val
        elif name in known_anywhere:
            raise click.BadParameter(
                f"{path}: the setting {key!r} is not used by `dmftjax {cmd_name}` (put it "
                f"in the table of a subcommand that uses it: {_users_of(name)})",
                ctx,
                param,
            )
        else:
            raise click.BadParameter(f"{path}: unknown setting {key!r}", ctx, param)
    for key, val in data.get(cmd_name or "", {}).items():
        name = key.replace("-", "_")
        if name not in own:
            raise click.BadParameter(
                f"{path}: [{cmd_name}] has unknown setting {key!r} "
                f"(known: {', '.join(sorted(own))})",
                ctx,
                param,
            )
        settings[name] = val
    for name, val in settings.items():
        # as text, so that click parses a file's value exactly as the same flag typed on
        # the command line: `steps = 5.7` and `alpha = true` are refused, not 5 and 1.0
        if isinstance(val, list):
            settings[name] = ",".join(_toml_text(v) for v in val)
        elif isinstance(val, dict):
            raise click.BadParameter(f"{path}: {name} = a table is not a value", ctx, param)
        else:
            settings[name] = _toml_text(val)
    ctx.default_map = {**(ctx.default_map or {}), **settings}
    ctx.meta["dmftjax_config"] = str(path)
    return str(path)


# --------------------------------------------------------------------------------------
# numbers and grids


class _Grid(click.ParamType):
    """A grid of values: `1,2,3`, `start:stop:num` (evenly spaced) or
    `log:start:stop:num` (log-spaced)."""

    name = "grid"

    def convert(self, value, param, ctx):
        import numpy as np

        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        if isinstance(value, (int, float)):
            value = str(value)
        text = str(value).strip()
        try:
            if text.startswith("log:"):
                a, b, n = text[4:].split(":")
                if float(a) <= 0 or float(b) <= 0:
                    self.fail(f"{text!r}: a log grid needs positive ends", param, ctx)
                vals = np.logspace(math.log10(float(a)), math.log10(float(b)), int(n))
            elif ":" in text:
                a, b, n = text.split(":")
                vals = np.linspace(float(a), float(b), int(n))
            else:
                vals = np.asarray([float(v) for v in text.split(",") if v.strip()])
        except ValueError:
            self.fail(
                f"{text!r} is not a grid (use 1,2,3 or start:stop:num or log:start:stop:num)",
                param,
                ctx,
            )
        if vals.size == 0:
            self.fail(f"{text!r} is an empty grid", param, ctx)
        if not np.all(np.isfinite(vals)):
            self.fail(f"{text!r} has a non-finite value", param, ctx)
        return vals


GRID = _Grid()
POSITIVE = click.FloatRange(min=0, min_open=True)
NONNEGATIVE = click.FloatRange(min=0)


# --------------------------------------------------------------------------------------
# shared options


def _options(*decorators):
    def apply(f):
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


CONFIG = click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="TOML file of settings (keys are option names; flags win)",
)
OUTPUT = _options(
    click.option(
        "--out",
        default="dmftjax-output",
        show_default=True,
        type=click.Path(file_okay=False),
        help="folder for the figure, JSON and CSV",
    ),
    click.option(
        "--overwrite",
        is_flag=True,
        help="replace earlier results (default: write to the next free name)",
    ),
    click.option(
        "--seed", default=0, show_default=True, type=click.IntRange(min=0), help="root random seed"
    ),
    click.option(
        "--quiet",
        "-q",
        is_flag=True,
        help="no progress bars (from 300 steps on the bar counts the time steps, and such a "
        "run is not stored in the compilation cache)",
    ),
)
FIGURE_FORMATS = ["png", "pdf", "svg"]
FIGURE = _options(
    click.option(
        "--format",
        type=click.Choice(FIGURE_FORMATS),
        default="png",
        show_default=True,
        help="file format of the figure",
    ),
    click.option(
        "--dpi",
        default=300.0,
        show_default=True,
        type=POSITIVE,
        help="resolution of the figure in dots per inch (PNG; the rasterised "
        "parts of a PDF or SVG)",
    ),
    click.option(
        "--width",
        type=click.Choice(["one", "two"]),
        default="two",
        show_default=True,
        help="figure width: one journal column (3.4 in) or two (7.0 in)",
    ),
    click.option(
        "--footer/--no-footer",
        default=True,
        show_default=True,
        help="the provenance footer under the figure (version, command, seed, settings)",
    ),
)
FIGURE_OPTIONS = ("format", "dpi", "width", "footer")
PROBLEM = _options(
    click.option(
        "--model",
        type=click.Choice(["phase-retrieval", "linear", "probit"]),
        default="phase-retrieval",
        show_default=True,
        help="the link y = f(z, eps)",
    ),
    click.option(
        "--noise", default=0.1, show_default=True, type=NONNEGATIVE, help="label noise of the model"
    ),
    click.option(
        "--loss",
        type=click.Choice(["wirtinger", "square", "logistic"]),
        default="wirtinger",
        show_default=True,
    ),
    click.option(
        "--prior",
        type=click.Choice(["gaussian", "rademacher"]),
        default="gaussian",
        show_default=True,
        help="law of the entries of theta*",
    ),
)
ALPHA = click.option(
    "--alpha", default=3.0, show_default=True, type=POSITIVE, help="sample ratio n/d"
)
LAM = click.option(
    "--lam", default=0.05, show_default=True, type=NONNEGATIVE, help="ridge strength"
)
METHODS = ["gd", "heavy-ball", "nesterov"]  # the deterministic ones (sweeps, tuning)
ALGORITHM = _options(
    click.option(
        "--algorithm",
        type=click.Choice(METHODS + ["sgd", "langevin", "gradient-flow"]),
        default="gd",
        show_default=True,
        help="gradient descent, heavy-ball (Polyak) or Nesterov momentum, minibatch SGD "
        "(--batch-fraction, --sampling), Langevin / noisy GD (--temperature), or gradient "
        "flow on physical time (--step is dt; predict extrapolates dt -> 0 by Richardson, "
        "simulate integrates the ODE with diffrax)",
    ),
    click.option(
        "--batch-fraction",
        default=None,
        type=click.FloatRange(min=0, max=1, min_open=True),
        help="sgd: expected fraction b of the rows in a batch (gradient rescaled by 1/b)",
    ),
    click.option(
        "--sampling",
        type=click.Choice(["bernoulli", "fixed", "reshuffle"]),
        default=None,
        help="sgd: Bernoulli masks per row (default), a fixed-size batch per step, or "
        "random reshuffling (1/b batches per epoch)",
    ),
    click.option(
        "--temperature",
        default=None,
        type=click.FloatRange(min=0),
        help="langevin: temperature T (kick sqrt(2 step T) per coordinate and step)",
    ),
    click.option("--step", default=0.05, show_default=True, type=POSITIVE, help="step size"),
    click.option(
        "--momentum",
        default=None,
        type=click.FloatRange(min=0, max=1, max_open=True),
        help="momentum beta in [0, 1) (heavy-ball and nesterov; default 0.5)",
    ),
    click.option(
        "--steps",
        default=100,
        show_default=True,
        type=click.IntRange(min=1),
        help="number of gradient steps",
    ),
)
PREPROCESSING = _options(
    click.option(
        "--preprocessing",
        type=click.Choice(["trimmed", "clipped", "luo-alghamdi-lu", "mondelli-montanari"]),
        default="trimmed",
        show_default=True,
        help="spectral preprocessing T(y)",
    ),
    click.option(
        "--tau",
        default=None,
        type=float,
        help="its parameter: trimming/clipping level (default 4), lower clip of "
        "luo-alghamdi-lu (default none), tuned alpha of mondelli-montanari "
        "(default: the problem's)",
    ),
)
INIT = _options(
    click.option(
        "--init",
        "init_kind",
        type=click.Choice(["informed", "spectral"]),
        default="informed",
        show_default=True,
        help="informed start (overlap, norm) or spectral start",
    ),
    click.option(
        "--overlap",
        default=0.5,
        show_default=True,
        type=float,
        help="initial overlap <theta*, theta0>/d (informed start)",
    ),
    click.option(
        "--norm",
        default=1.0,
        show_default=True,
        type=POSITIVE,
        help="initial norm |theta0|^2/d (informed start)",
    ),
    PREPROCESSING,
)
DMFT = _options(
    click.option(
        "--samples",
        default=2000,
        show_default=True,
        type=click.IntRange(min=2),
        help="Monte Carlo samples M of the DMFT, per replica",
    ),
    click.option(
        "--replicas",
        default=4,
        show_default=True,
        type=click.IntRange(min=2),
        help="independent DMFT replicas (for the standard error)",
    ),
    click.option(
        "--estimator",
        type=click.Choice(["tangent", "ibp", "windowed"]),
        default="tangent",
        show_default=True,
        help="exact responses (tangent), integration by parts (ibp) or the "
        "long-horizon mode (windowed)",
    ),
    click.option(
        "--window",
        default=40,
        show_default=True,
        type=click.IntRange(min=2),
        help="memory window (lags) of --estimator windowed",
    ),
    click.option(
        "--handoff",
        default=None,
        type=click.FloatRange(min=0, min_open=True),
        help="hand off to the fixed point once the remaining change is below "
        "this fraction of the error",
    ),
)
SIMULATION = _options(
    click.option(
        "--dim",
        default=1000,
        show_default=True,
        type=click.IntRange(min=2),
        help="dimension d of the simulation",
    ),
    click.option(
        "--seeds",
        default=6,
        show_default=True,
        type=click.IntRange(min=2),
        help="independent simulation seeds",
    ),
)


# --------------------------------------------------------------------------------------
# building the objects


def _api(name: str):
    """A public name of dmftjax, or a clean one-line failure if this build lacks it."""
    import dmftjax

    obj = getattr(dmftjax, name, None)
    if obj is None:
        raise click.ClickException(
            f"dmftjax.{name} is not available in this version of dmftjax "
            f"({dmftjax.__version__}); this subcommand needs it"
        )
    return obj


def _problem(p):
    import dmftjax as dj

    models = {
        "phase-retrieval": dj.PhaseRetrieval,
        "linear": dj.LinearModel,
        "probit": dj.ProbitModel,
    }
    losses = {"wirtinger": dj.WirtingerLoss, "square": dj.SquareLoss, "logistic": dj.LogisticLoss}
    priors = {"gaussian": dj.GaussianPrior, "rademacher": dj.RademacherPrior}
    try:
        return dj.Problem(
            models[p["model"]](float(p["noise"])),
            losses[p["loss"]](),
            alpha=float(p.get("alpha", 1.0)),
            regulariser=dj.Ridge(float(p.get("lam", 0.0))),
            prior=priors[p["prior"]](),
        )
    except ValueError as err:
        _fail(str(err))


def _preprocessing(p, alpha=None):
    kind, tau = p["preprocessing"], p.get("tau")
    try:
        if kind == "trimmed":
            return _api("Trimmed")(4.0 if tau is None else float(tau))
        if kind == "clipped":
            return _api("Clipped")(4.0 if tau is None else float(tau))
        if kind == "luo-alghamdi-lu":
            return _api("LuoAlghamdiLu")(None if tau is None else float(tau))
        return _api("MondelliMontanari")(None if tau is None else float(tau))
    except ValueError as err:
        _fail(str(err))


def _algorithm(p):
    import dmftjax as dj

    kind, beta = p.get("algorithm", "gd"), p.get("momentum")
    if kind not in ("heavy-ball", "nesterov") and beta is not None:
        _fail("--momentum needs --algorithm heavy-ball or nesterov")
    frac, sampling, temp = p.get("batch_fraction"), p.get("sampling"), p.get("temperature")
    if kind != "sgd" and (frac is not None or sampling is not None):
        _fail("--batch-fraction and --sampling need --algorithm sgd")
    if kind != "langevin" and temp is not None:
        _fail("--temperature needs --algorithm langevin")
    if kind == "sgd" and frac is None:
        _fail("--algorithm sgd needs --batch-fraction (the expected fraction of rows per batch)")
    if kind == "langevin" and temp is None:
        _fail("--algorithm langevin needs --temperature")
    beta = 0.5 if beta is None else float(beta)
    try:
        if kind == "sgd":
            return dj.MinibatchSGD(
                float(p["step"]), float(frac), int(p["steps"]), sampling=sampling or "bernoulli"
            )
        if kind == "langevin":
            return dj.Langevin(float(p["step"]), float(temp), int(p["steps"]))
        if kind == "gradient-flow":
            return dj.GradientFlow(float(p["step"]), int(p["steps"]))
        if kind == "heavy-ball":
            return dj.HeavyBall(float(p["step"]), beta, int(p["steps"]))
        if kind == "nesterov":
            return dj.Nesterov(float(p["step"]), beta, int(p["steps"]))
        return dj.GradientDescent(float(p["step"]), int(p["steps"]))
    except ValueError as err:
        _fail(str(err))


def _init(p):
    import dmftjax as dj

    try:
        if p["init_kind"] == "spectral":
            return _api("SpectralInit")(_preprocessing(p))
        return dj.InformedInit(float(p["overlap"]), float(p["norm"]))
    except ValueError as err:
        _fail(str(err))


def _check_dmft_sizes(p):
    if p["samples"] <= p["steps"] + 3:
        _fail(f"--samples {p['samples']} must exceed --steps + 3 = {p['steps'] + 3}")


# --------------------------------------------------------------------------------------
# output


# a live bar over the time steps from inside the compiled loop from this many steps on:
# a computation with host callbacks is never stored in JAX's persistent compilation cache,
# so shorter runs keep the cache (their compile time is what a user feels) and long ones,
# which take minutes, show their progress
LIVE_STEPS = 300


def _live(p) -> bool:
    return not p["quiet"] and int(p["steps"]) >= LIVE_STEPS


def _clean(obj):
    """JSON-safe: arrays to lists, NaN to null, infinities to strings."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        return _clean(np.asarray(obj).tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


class _Outputs:
    """The files of one run: `<out>/<stem>.<ext>`, staged to temporary files and moved
    into place together by `commit` (so a failed run leaves earlier results as they
    were). If any target exists and `overwrite` is off, the next free stem is used."""

    def __init__(self, folder, stem: str, exts, overwrite: bool):
        self.folder = Path(folder)
        # checked now, created at the first write: a run that fails leaves no folder
        existing = self.folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        try:
            if not existing.is_dir():
                raise NotADirectoryError(f"{existing} is not a folder")
            with tempfile.NamedTemporaryFile(dir=existing, prefix=".dmftjax-probe-"):
                pass
        except OSError as err:
            raise click.ClickException(
                f"cannot write to the output folder {self.folder}: {err.strerror or err}"
            ) from None
        self.exts = list(exts)
        self.stem = stem
        self.renamed = False
        if not overwrite:
            k = 0
            while any((self.folder / f"{self.stem}.{e}").exists() for e in self.exts):
                k += 1
                self.stem = f"{stem}-{k}"
                self.renamed = True
        self.staged: dict[Path, Path] = {}

    def path(self, ext: str) -> Path:
        return self.folder / f"{self.stem}.{ext}"

    def _tmp(self, ext: str) -> Path:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise click.ClickException(
                f"cannot create the output folder {self.folder}: {err.strerror or err}"
            ) from None
        fd, name = tempfile.mkstemp(dir=self.folder, prefix=f".{self.stem}.", suffix=f".{ext}")
        os.close(fd)
        tmp = Path(name)
        self.staged[self.path(ext)] = tmp
        return tmp

    def json(self, payload: dict):
        self._tmp("json").write_text(json.dumps(_clean(payload), indent=1))

    def csv(self, header: list[str], rows: list[list], meta: dict):
        buf = io.StringIO()
        buf.write(f"# dmftjax {meta['dmftjax_version']} {meta['command']}; seed={meta['seed']}\n")
        buf.write(f"# settings: {json.dumps(_clean(meta['settings']))}\n")
        w = csv.writer(buf)
        w.writerow(header)
        w.writerows([[_fmt(v) for v in row] for row in rows])
        self._tmp("csv").write_text(buf.getvalue())

    def figure(self, fig, meta: dict, fmt: str = "png", dpi: float = 300.0, footer: bool = True):
        """The figure in `fmt` (png, pdf or svg), with the run's settings in the file's
        metadata (PNG Software/Title/Description, PDF Creator/Title/Subject, SVG
        Creator/Title/Description) and, with `footer`, printed under it."""
        import matplotlib.pyplot as plt

        if fmt not in FIGURE_FORMATS:
            raise click.BadParameter(f"unknown figure format {fmt!r}", param_hint="--format")
        if footer:
            _stamp(fig, meta)
        software = f"dmftjax {meta['dmftjax_version']}"
        description = json.dumps(_clean(meta))
        metadata = {
            "png": {"Software": software, "Title": meta["command"], "Description": description},
            "pdf": {"Creator": software, "Title": meta["command"], "Subject": description},
            # no date: the same figure gives the same file
            "svg": {
                "Creator": software,
                "Title": meta["command"],
                "Description": description,
                "Date": None,
            },
        }[fmt]
        with plt.rc_context({"svg.hashsalt": "dmftjax"}):  # reproducible SVG ids
            fig.savefig(self._tmp(fmt), format=fmt, dpi=dpi, metadata=metadata)
        plt.close(fig)

    def commit(self) -> list[Path]:
        umask = os.umask(0)
        os.umask(umask)
        for final, tmp in self.staged.items():
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results follow the umask
            os.replace(tmp, final)
        done = list(self.staged)
        self.staged = {}
        return done

    def discard(self):
        for tmp in self.staged.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        self.staged = {}


def _fmt(v):
    if isinstance(v, float):
        return repr(v)
    return v


def _stamp(fig, meta: dict):
    """The provenance footer: version, command, seed and the main settings."""
    from dmftjax.plotting import add_footer, footer_text

    s = meta["settings"]
    keys = [
        k
        for k in (
            "model",
            "noise",
            "loss",
            "alpha",
            "lam",
            "step",
            "steps",
            "init_kind",
            "samples",
            "replicas",
            "dim",
            "seeds",
            "engine",
        )
        if k in s
    ]
    if s.get("engine") in ("fixed-point", "spectral"):  # a sweep's dmft-only settings
        keys = [k for k in keys if k not in ("steps", "init_kind", "samples", "replicas")]
    text = ", ".join(f"{k}={s[k]}" for k in keys)
    add_footer(
        fig,
        footer_text(
            f"dmftjax {meta['dmftjax_version']} {meta['command']}, seed {meta['seed']}: {text}", fig
        ),
    )


def _meta(ctx: click.Context, params: dict) -> dict:
    import jax

    import dmftjax
    from dmftjax._provenance import provenance
    from dmftjax._trajectory import MEANINGS

    return {
        "command": ctx.command_path,
        "dmftjax_version": dmftjax.__version__,
        "jax_version": jax.__version__,
        "seed": params.get("seed"),
        "settings": {k: v for k, v in params.items()},
        "config_file": ctx.meta.get("dmftjax_config"),
        "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),  # type: ignore[attr-defined]  # dynamic attr
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # the command line as typed, every dependency's version, the git commit if any
        "provenance": provenance(),
        "observables": MEANINGS,
    }


@contextlib.contextmanager
def _writing(outputs: _Outputs):
    try:
        yield outputs
    except BaseException:
        outputs.discard()
        raise
    written = outputs.commit()
    note = ""
    if outputs.renamed:
        note = " (earlier results kept; --overwrite replaces them)"
    click.echo("wrote " + ", ".join(str(p) for p in written) + note)


class _Stages:
    """A progress bar over the long steps of a subcommand."""

    def __init__(self, names: list[str], quiet: bool):
        from tqdm.auto import tqdm

        self.names = names
        self.bar = tqdm(
            total=len(names),
            disable=quiet,
            leave=False,
            file=sys.stderr,
            bar_format="{desc}: {n_fmt}/{total_fmt} steps |{bar}| {elapsed}",
        )
        self.i = 0

    def __enter__(self):
        self._desc()
        return self

    def _desc(self):
        if self.i < len(self.names):
            self.bar.set_description_str(self.names[self.i])

    def done(self):
        self.bar.update(1)
        self.i += 1
        self._desc()

    def __exit__(self, *exc):
        self.bar.close()


def _trajectory_rows(trajs: dict):
    """One CSV row per time step: every observable (and its standard error) of every
    trajectory, columns prefixed by the trajectory's name."""
    import numpy as np

    from dmftjax import OBSERVABLES

    header = ["t"]
    cols = []
    first = next(iter(trajs.values()))
    times = np.asarray(first.times, dtype=float)
    if np.any(times != np.arange(times.size)):  # gradient flow: the physical time too
        header.append("time")
        cols.append(times)
    for label, tr in trajs.items():
        for name in OBSERVABLES:
            header += [f"{label}_{name}", f"{label}_{name}_se"]
            cols += [np.asarray(tr.values[name]), np.asarray(tr.stderr[name])]
    n = max(len(c) for c in cols)  # a diverged run's curves stop early: empty cells after
    rows = [[t] + [float(c[t]) if t < len(c) else None for c in cols] for t in range(n)]
    return header, rows


def _report_traj(label: str, tr, name: str = "error"):
    import numpy as np

    v, s = np.asarray(tr.values[name]), np.asarray(tr.stderr[name])
    T = len(v) - 1
    pts = sorted({0, min(10, T), T // 2, T})
    text = ", ".join(f"t={t}: {v[t]:.5g} ± {s[t]:.2g}" for t in pts)
    click.echo(f"{label} {name}: {text}")


# --------------------------------------------------------------------------------------
# figures: each subcommand's figure is drawn from the data it writes to its JSON file
# (after `_clean`, so exactly what the file holds), by the function `dmftjax plot` calls
# on that file


TRAJECTORY_PANELS = ("error", "cosine", "train_loss", "wrong_well")
FIXED_POINT_PANELS = ("error", "cosine", "train_loss", "test_error")


def _even_model(model: str) -> bool:
    return model == "phase-retrieval"


def _is_even(problem) -> bool:
    return bool(getattr(problem.model, "even", False))


def _draw_predict(data, width="two", names=None):
    from dmftjax.plotting import compare, trajectory_from_dict

    s = data["settings"]
    return compare(
        trajectory_from_dict(data["dmft"]),
        None,
        names=names or TRAJECTORY_PANELS,
        title=f"DMFT: {s['model']}, {s['loss']} loss, $\\alpha = {s['alpha']}$, "
        f"$\\lambda = {s['lam']}$, $\\eta = {s['step']}$",
        width=width,
        even=data["even"],
    )


def _draw_simulate(data, width="two", names=None):
    from dmftjax.plotting import compare, trajectory_from_dict

    s = data["settings"]
    dmft = data.get("dmft")
    return compare(
        None if dmft is None else trajectory_from_dict(dmft),
        trajectory_from_dict(data["simulation"]),
        names=names or TRAJECTORY_PANELS,
        title=f"$d = {s['dim']}$: {s['model']}, $\\alpha = {s['alpha']}$, "
        f"$\\lambda = {s['lam']}$, $\\eta = {s['step']}$",
        width=width,
        even=data["even"],
    )


def _draw_fixed_point(data, width="two", names=None):
    from dmftjax.plotting import compare, trajectory_from_dict

    if data.get("dmft") is None:
        raise click.UsageError(
            "this fixed-point result has no DMFT trajectory (it was run "
            "with --start default): there is no figure to draw"
        )
    s = data["settings"]
    names = names or FIXED_POINT_PANELS
    limits = {n: data["fixed_point"].get(n) for n in names}
    return compare(
        trajectory_from_dict(data["dmft"]),
        None,
        names=names,
        limits=limits,
        title=f"DMFT and its limit: $\\alpha = {s['alpha']}$, "
        f"$\\lambda = {s['lam']}$, $\\eta = {s['step']}$",
        width=width,
        even=data["even"],
    )


def _draw_spectral(data, width="two", names=None):
    from dmftjax.plotting import (
        AXIS_LABELS,
        figure_legend,
        floats,
        label,
        new_figure,
        style,
        wrap_title,
    )

    s = data["settings"]
    grid, cos2 = floats(data["curve"]["alpha"]), floats(data["curve"]["cosine2"])
    alpha_c = float(floats(data["threshold"]))
    theory = float(floats(data["theory"]["cosine2"]))
    measured = data.get("measured")
    entries = 2 + (measured is not None) + math.isfinite(alpha_c)
    with style():
        # one column: the legend is a row per entry, above the panel
        fig, axes = new_figure(width, 2.2 + 0.22 * entries if width == "one" else 3.2)
        ax = axes[0, 0]
        ax.plot(grid, cos2, "-", color="C0", lw=1.5, label=r"theory, $d = \infty$")
        ax.plot(
            [s["alpha"]],
            [theory],
            "o",
            color="C0",
            ms=4,
            label=f"theory at $\\alpha = {s['alpha']}$",
        )
        if measured is not None:
            ax.errorbar(
                [s["alpha"]],
                [float(floats(measured["cosine2"]))],
                yerr=[2 * float(floats(measured["cosine2_stderr"]))],
                fmt="s",
                ms=3.5,
                color="C3",
                capsize=2,
                elinewidth=0.8,
                label=f"measured, $d = {s['dim']}$ (bars: ±2 s.e.)",
            )
        if math.isfinite(alpha_c):
            ax.axvline(
                alpha_c,
                color="k",
                ls="--",
                lw=1,
                label=f"weak recovery $\\alpha_c = {alpha_c:.3g}$",
            )
        ax.set_xlabel(AXIS_LABELS["alpha"])
        ax.set_ylabel(label("cosine2"))
        # the preprocessing as used (its default threshold filled in), not the raw option
        ax.set_title(
            wrap_title(
                f"{s['model']}, noise={s['noise']}, {data['preprocessing_used']}",
                width,
                8,
                fraction=0.75,
            )
        )
        ax.grid(alpha=0.3, lw=0.5)
        # above the panel: inside, it would sit on the threshold line or the curve
        handles, labels = ax.get_legend_handles_labels()
        figure_legend(fig, handles, labels, 1 if width == "one" else 2)
    return fig


def _sweep_metric(data) -> str:
    s = data["settings"]
    return s.get("metric") or ("cosine2" if s.get("engine") == "spectral" else "error")


def _draw_sweep(data, width="two", names=None):
    from dmftjax.plotting import plot_phase_diagram, sweep_from_dict

    s = data["settings"]
    result = sweep_from_dict(data["sweep"])
    metric = names[0] if names else _sweep_metric(data)
    ax_names = list(result.axes)
    y = next((n for n in ax_names[1:] if len(result.axes[n]) > 1), None)
    return plot_phase_diagram(
        result,
        metric,
        x=ax_names[0],
        y=y,
        width=width,
        even=data["even"],
        title=f"{s['engine']} sweep: {s['model']}, noise={s['noise']}, {s['loss']} loss",
    )


def _tune_labels(s, even):
    from dmftjax.plotting import label

    if s["param"] == "lam":
        return r"ridge $\lambda$", label("error", even, r"\infty")
    name = r"step size $\eta$" if s["param"] == "step" else r"momentum $\beta$"
    return f"{name} ({s['algorithm']})", label("error", even, str(s["steps"]))


def _draw_tune(data, width="two", names=None):
    from dmftjax._tune import TuneResult
    from dmftjax.plotting import WIDTHS, floats, style

    plot_tuning = _api("plot_tuning")
    s, o = data["settings"], data["optimiser"]
    res = TuneResult(
        params=floats(o["params"]),
        value=float(floats(o["value"])),
        best_params=floats(o["best_params"]),
        best_value=float(floats(o["best_value"])),
        path_params=floats(o["path_params"]),
        path_values=floats(o["path_values"]),
        path_grads=floats(o["path_grads"]),
    )
    name, ylabel = _tune_labels(s, data["even"])
    with style():
        fig = plot_tuning(
            [
                dict(
                    grid=floats(data["grid"]),
                    values=floats(data["grid_values"]),
                    result=res,
                    name=name,
                    ylabel=ylabel,
                    title=f"$\\alpha = {s['alpha']}$, noise={s['noise']}",
                    transform=o["transform"],
                )
            ]
        )
        fig.set_size_inches(WIDTHS[width], 3.1 if width == "one" else 3.4)
        for ax in fig.axes:
            leg = ax.get_legend()
            if leg is not None:  # above the panel, off the data, titled by the panel's title
                handles, labels = leg.legend_handles, [t.get_text() for t in leg.get_texts()]
                leg.remove()
                new = ax.legend(
                    handles,
                    labels,
                    loc="lower center",
                    bbox_to_anchor=(0.5, 1.01),
                    ncols=2,
                    title=ax.get_title() or None,
                    title_fontsize=8,
                    fontsize=7,
                    frameon=False,
                    borderaxespad=0.2,
                )
                new.get_title().set_multialignment("center")
                ax.set_title("")
        # plot_tuning lays its figure out once (tight layout, colorbars made for it):
        # again at the new size
        fig.tight_layout()
    return fig


def _draw_demo(data, width="two", names=None):
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from dmftjax.plotting import (
        _draw_curve,
        _log_scale,
        figure_legend,
        label,
        legend_label,
        new_figure,
        style,
        time_label,
        title_of,
        trajectory_from_dict,
        wrap_title,
    )

    s = data["settings"]
    one = width == "one"
    panels = ("error", "cosine")
    with style():
        fig, axes = new_figure(
            width, 4.4 if one else 2.9, nrows=2 if one else 1, ncols=1 if one else 2
        )
        axes = axes.ravel()
        handles, labels = [], []
        spread = {n: [] for n in panels}
        times = None
        for i, (alpha, r) in enumerate(data["results"].items()):
            dmft, sim = trajectory_from_dict(r["dmft"]), trajectory_from_dict(r["simulation"])
            times = dmft.times
            every = max(1, round(len(np.asarray(sim.times)) / (12 if one else 16)))
            for ax, name in zip(axes, panels):
                _draw_curve(ax, dmft, name, color=f"C{i}", lw=1.3)
                _draw_curve(ax, sim, name, color=f"C{i}", every=every, ms=2.5)
                spread[name] += [dmft.values[name], sim.values[name]]
            handles.append(Line2D([], [], color=f"C{i}", lw=2))
            labels.append(f"$\\alpha = {alpha}$")
        # what the line, band, points and bars are (in grey: every alpha alike)
        bars = axes[0].errorbar(
            [np.nan],
            [np.nan],
            yerr=[np.nan],
            fmt="o",
            ms=2.5,
            color="0.4",
            capsize=1.5,
            elinewidth=0.8,
            label="_nolegend_",
        )
        handles += [
            (Patch(color="0.4", alpha=0.25, lw=0), Line2D([], [], color="0.4", lw=1.3)),
            bars,
        ]
        labels += [legend_label("dmft"), legend_label("simulation", s["dim"])]
        for ax, name in zip(axes, panels):
            if name == "error" and _log_scale(spread[name]):
                ax.set_yscale("log")
            ax.set_xlabel(time_label(times))
            ax.set_ylabel(label(name, even=True))
            ax.set_title(title_of(name))
            ax.grid(alpha=0.3, lw=0.5)
        n_alpha = len(data["results"])
        figure_legend(
            fig,
            handles,
            labels,
            2 if one else (n_alpha + 2 if n_alpha <= 3 else 3),
            wrap_title(
                f"spectral (Mondelli-Montanari) start, regularised Wirtinger "
                f"flow, $\\lambda = {s['lam']}$, $\\eta = {s['step']}$, "
                f"noise = {s['noise']}",
                width,
            ),
        )
    return fig


_DRAWERS = {
    "predict": _draw_predict,
    "simulate": _draw_simulate,
    "fixed-point": _draw_fixed_point,
    "spectral": _draw_spectral,
    "sweep": _draw_sweep,
    "tune": _draw_tune,
    "demo": _draw_demo,
}
# what each kind of result needs to be drawn again (besides the run's meta)
_NEEDS = {
    "predict": ("even", "dmft"),
    "simulate": ("even", "simulation", "dmft"),
    "fixed-point": ("even", "fixed_point", "dmft"),
    "spectral": ("curve", "threshold", "theory", "measured", "preprocessing_used"),
    "sweep": ("even", "sweep"),
    "tune": ("even", "optimiser", "grid", "grid_values"),
    "demo": ("results",),
}
_META_NEEDS = ("dmftjax_version", "command", "seed", "settings")
_NAMED = {"predict": "panels", "simulate": "panels", "fixed-point": "panels", "sweep": "metric"}


def _draw(payload: dict, p: dict, names=None):
    """The figure of one result (the JSON-level data), `p["width"]` columns wide."""
    return _DRAWERS[payload["kind"]](payload, width=p.get("width", "two"), names=names)


def _figure_outputs(p, stem: str, exts=("json", "csv")):
    return _Outputs(p["out"], stem, [p["format"], *exts], p["overwrite"])


def _write_figure(out, fig, meta, p):
    out.figure(fig, meta, p["format"], p["dpi"], p["footer"])


# --------------------------------------------------------------------------------------
# the group


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, no_args_is_help=True
)
@click.version_option(package_name="dmftjax")
@click.pass_context
def main(ctx):
    """Exact (d = infinity) predictions for gradient descent on single-index models,
    checked against finite-size simulation.

    \b
    Examples:
      dmftjax demo --out results/
      dmftjax predict --alpha 3 --lam 0.05 --step 0.05 --steps 100
      dmftjax predict --config settings.toml
      dmftjax simulate --alpha 3 --dim 1000 --seeds 6 --compare
      dmftjax fixed-point --alpha 3 --lam 0.05
      dmftjax spectral --alpha 2 --preprocessing trimmed --tau 4
      dmftjax sweep --alpha 1:5:9 --lam 0,0.05,0.1 --steps 50
      dmftjax tune --param lam --alpha 3
      dmftjax plot results/predict.json --format pdf --width one
    """
    import jax
    import matplotlib

    matplotlib.use("Agg")  # the command line draws to files, on machines without a display
    jax.config.update("jax_enable_x64", True)
    from ._cache import enable_compilation_cache

    try:  # a second run of the same shape loads its compiled solver ($DMFTJAX_CACHE_DIR)
        enable_compilation_cache()
    except ValueError as err:
        _fail(str(err))
    old = warnings.showwarning

    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
            return
        click.echo(f"warning: {_one_line(message)}", err=True)

    warnings.showwarning = one_line_warning
    ctx.call_on_close(lambda: setattr(warnings, "showwarning", old))


# --------------------------------------------------------------------------------------
# demo


@main.command()
@CONFIG
@OUTPUT
@FIGURE
@click.option(
    "--alphas", default="1.5,2,3,5", show_default=True, help="sample ratios n/d, comma-separated"
)
@click.option("--lam", default=0.05, show_default=True, type=NONNEGATIVE)
@click.option("--step", default=0.01, show_default=True, type=POSITIVE)
@click.option("--steps", default=80, show_default=True, type=click.IntRange(min=1))
@click.option("--noise", default=0.0, show_default=True, type=NONNEGATIVE)
@click.option("--dim", default=1000, show_default=True, type=click.IntRange(min=2))
@click.option("--seeds", default=6, show_default=True, type=click.IntRange(min=2))
@click.option("--samples", default=4000, show_default=True, type=click.IntRange(min=2))
@click.option("--replicas", default=4, show_default=True, type=click.IntRange(min=2))
@click.pass_context
def demo(ctx, **p):
    """The worked example: spectral-initialised regularised Wirtinger flow on phase
    retrieval (Mondelli-Montanari preprocessing), DMFT against simulation, for several
    alpha.

    \b
    Example:
      dmftjax demo --alphas 2,3,5 --lam 0.05 --step 0.01 --out results/
    writes results/demo.png (error and cosine against t; --format pdf or svg for
    those), demo.json (every curve,
    settings, version, seed) and demo.csv (one row per alpha), and prints the table.
    """
    from dmftjax._demo import format_table, run_demo

    try:
        alphas = tuple(float(a) for a in str(p["alphas"]).split(","))
    except ValueError:
        raise click.BadParameter(
            f"not a comma-separated list of numbers: {p['alphas']!r}", param_hint="--alphas"
        ) from None
    if any(not a > 0 for a in alphas):
        raise click.BadParameter("every alpha must be > 0", param_hint="--alphas")
    if p["samples"] % 2:
        raise click.BadParameter("must be even (antithetic pairs)", param_hint="--samples")
    outputs = _figure_outputs(p, "demo")
    names = [f"alpha = {a}: DMFT and simulation" for a in alphas]
    with _Stages(names, p["quiet"]) as st:
        demo_fig, results, rows = run_demo(
            alphas=alphas,
            lam=p["lam"],
            step=p["step"],
            steps=p["steps"],
            noise=p["noise"],
            dim=p["dim"],
            seeds=p["seeds"],
            samples=p["samples"],
            replicas=p["replicas"],
            seed=p["seed"],
            progress=lambda _: st.done(),
        )
    import matplotlib.pyplot as plt

    plt.close(demo_fig)  # drawn again below from the saved data, as `dmftjax plot` draws it
    meta = _meta(ctx, p)
    payload = _clean(dict(meta, kind="demo", even=True, results=results, table=rows))
    fig = _draw(payload, p)
    with _writing(outputs) as out:
        _write_figure(out, fig, meta, p)
        out.json(payload)
        out.csv(list(rows[0]), [list(r.values()) for r in rows], meta)
    click.echo(format_table(rows))


# --------------------------------------------------------------------------------------
# predict


@main.command()
@CONFIG
@OUTPUT
@FIGURE
@PROBLEM
@ALPHA
@LAM
@ALGORITHM
@INIT
@DMFT
@click.option("--kernels", is_flag=True, help="also store the DMFT kernels C, R, Gamma in the JSON")
@click.pass_context
def predict(ctx, **p):
    """The DMFT (d = infinity) trajectory of gradient descent.

    \b
    Example:
      dmftjax predict --alpha 3 --lam 0.05 --step 0.05 --steps 100 --out results/
      dmftjax predict --config run.toml        # with run.toml:
        alpha = 3.0
        lam = 0.05
        [predict]
        steps = 200
        samples = 4000
    writes results/predict.png, predict.json (every curve, settings, version, seed),
    predict.csv.
    """
    import jax

    import dmftjax as dj

    problem, alg, init = _problem(p), _algorithm(p), _init(p)
    _check_dmft_sizes(p)
    flow = isinstance(alg, dj.GradientFlow)
    if flow and p["kernels"]:
        _fail("--kernels: gradient flow's curves are extrapolated in dt, without kernels")
    outputs = _figure_outputs(p, "predict")
    with _Stages(["DMFT (compile + solve)", "figure"], p["quiet"]) as st:
        t0 = time.perf_counter()
        try:
            traj = (dj.richardson if flow else dj.solve_dmft)(
                problem,
                alg,
                init,
                num_samples=p["samples"],
                num_replicas=p["replicas"],
                estimator=p["estimator"],
                window=p["window"],
                handoff=p["handoff"],
                key=jax.random.key(p["seed"]),
                progress=_live(p),
            )
        except ValueError as err:
            _fail(str(err))
        seconds = time.perf_counter() - t0
        st.done()
        meta = _meta(ctx, p)
        data = traj.to_dict()
        if p["kernels"] and traj.kernels is not None:
            data["kernels"] = {k: v for k, v in traj.kernels.items()}
        payload = _clean(
            dict(meta, kind="predict", even=_is_even(problem), dmft=data, seconds=seconds)
        )
        fig = _draw(payload, p)
        st.done()
    with _writing(outputs) as out:
        _write_figure(out, fig, meta, p)
        out.json(payload)
        out.csv(*_trajectory_rows({"dmft": traj}), meta)
    _report_traj("DMFT", traj)
    if flow:
        click.echo(
            "gradient flow: extrapolated from dt = {:g} and {:g} (largest change of the "
            "error between them {:.2g})".format(
                *traj.info["dt"], traj.info["dt_dependence"]["error"]
            )
        )
    if traj.diverged:
        click.echo(f"diverged at step {traj.diverged_at}")


# --------------------------------------------------------------------------------------
# simulate


@main.command()
@CONFIG
@OUTPUT
@FIGURE
@PROBLEM
@ALPHA
@LAM
@ALGORITHM
@INIT
@SIMULATION
@click.option(
    "--compare/--no-compare",
    "with_dmft",
    default=False,
    show_default=True,
    help="also solve the DMFT and draw both",
)
@DMFT
@click.pass_context
def simulate(ctx, **p):
    """Run gradient descent at finite dimension on independent random draws.

    \b
    Example:
      dmftjax simulate --alpha 3 --lam 0.05 --dim 1000 --seeds 6 --compare --out results/
    writes results/simulate.png (with the DMFT when --compare), simulate.json, simulate.csv.
    """
    import jax

    import dmftjax as dj

    problem, alg, init = _problem(p), _algorithm(p), _init(p)
    if p["with_dmft"]:
        _check_dmft_sizes(p)
    outputs = _figure_outputs(p, "simulate")
    k_dmft, k_sim = jax.random.split(jax.random.key(p["seed"]))
    names = ["simulation (compile + run)"] + (["DMFT"] if p["with_dmft"] else []) + ["figure"]
    dmft = None
    with _Stages(names, p["quiet"]) as st:
        try:
            sim = dj.simulate(
                problem,
                alg,
                init,
                dim=p["dim"],
                num_seeds=p["seeds"],
                key=k_sim,
                progress=_live(p),
            )
            st.done()
            if p["with_dmft"]:
                dmft = dj.solve_dmft(
                    problem,
                    alg,
                    init,
                    num_samples=p["samples"],
                    num_replicas=p["replicas"],
                    estimator=p["estimator"],
                    window=p["window"],
                    handoff=p["handoff"],
                    key=k_dmft,
                    progress=_live(p),
                )
                st.done()
        except ValueError as err:
            _fail(str(err))
        meta = _meta(ctx, p)
        payload = _clean(
            dict(
                meta,
                kind="simulate",
                even=_is_even(problem),
                simulation=sim.to_dict(),
                dmft=None if dmft is None else dmft.to_dict(),
            )
        )
        fig = _draw(payload, p)
        st.done()
    trajs = {"sim": sim} if dmft is None else {"dmft": dmft, "sim": sim}
    with _writing(outputs) as out:
        _write_figure(out, fig, meta, p)
        out.json(payload)
        out.csv(*_trajectory_rows(trajs), meta)
    _report_traj("simulation", sim)
    if dmft is not None:
        _report_traj("DMFT", dmft)


# --------------------------------------------------------------------------------------
# fixed point


@main.command("fixed-point")
@CONFIG
@OUTPUT
@FIGURE
@PROBLEM
@ALPHA
@LAM
@click.option(
    "--start",
    type=click.Choice(["dmft", "default"]),
    default="dmft",
    show_default=True,
    help="start Newton from a DMFT run (picks the branch GD reaches) or from m = q = 1",
)
@ALGORITHM
@INIT
@DMFT
# max: dmftjax._fixed_point.MAX_NODES (not imported here: the CLI parses before importing jax)
@click.option(
    "--nodes",
    default=32,
    show_default=True,
    type=click.IntRange(min=4, max=1024),
    help="Gauss-Hermite nodes per dimension",
)
@click.pass_context
def fixed_point_cmd(ctx, **p):
    """The long-time limit of gradient descent (stationary DMFT equations).

    \b
    Example:
      dmftjax fixed-point --alpha 3 --lam 0.05 --step 0.05 --steps 200 --out results/
    runs the DMFT for --steps steps, starts Newton's method from its last point, and
    writes results/fixed-point.png (trajectory and its limit), fixed-point.json,
    fixed-point.csv. With --start default no DMFT is run (and no figure drawn).
    """
    import jax
    import numpy as np

    import dmftjax as dj

    fixed_point = _api("fixed_point")
    problem = _problem(p)
    traj = None
    exts = ["json", "csv"]
    if p["start"] == "dmft":
        alg, init = _algorithm(p), _init(p)
        if not alg.has_fixed_point:
            _fail(
                f"--algorithm {p['algorithm']}: a constant-step stochastic method has no fixed "
                "point (it converges to a stationary law); use dmftjax predict"
            )
        _check_dmft_sizes(p)
        exts = [p["format"]] + exts
    else:
        given = [
            f"--{n}" if n != "footer" else ("--footer" if p[n] else "--no-footer")
            for n in FIGURE_OPTIONS
            if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            _fail(
                f"{', '.join(given)}: no figure is drawn with --start default (only with "
                "--start dmft)"
            )
    outputs = _Outputs(p["out"], "fixed-point", exts, p["overwrite"])
    names = ["DMFT (compile + solve)"] if traj is None and p["start"] == "dmft" else []
    names += ["fixed point (compile + Newton)"] + (["figure"] if p["start"] == "dmft" else [])
    with _Stages(names, p["quiet"]) as st:
        try:
            if p["start"] == "dmft":
                traj = dj.solve_dmft(
                    problem,
                    alg,
                    init,
                    num_samples=p["samples"],
                    num_replicas=p["replicas"],
                    estimator=p["estimator"],
                    window=p["window"],
                    handoff=p["handoff"],
                    key=jax.random.key(p["seed"]),
                )
                st.done()
                if traj.diverged:
                    _fail(f"the DMFT diverged at step {traj.diverged_at}: lower --step")
            fp = fixed_point(problem, start=traj, num_nodes=p["nodes"])
        except ValueError as err:
            _fail(str(err))
        st.done()
        meta = _meta(ctx, p)
        values = fp.as_dict()
        payload = _clean(
            dict(
                meta,
                kind="fixed-point",
                even=_is_even(problem),
                fixed_point=values,
                valid=bool(fp.valid),
                dmft=None if traj is None else traj.to_dict(),
            )
        )
        fig = None
        if traj is not None:
            fig = _draw(payload, p)
            st.done()
    with _writing(outputs) as out:
        if fig is not None:
            _write_figure(out, fig, meta, p)
        out.json(payload)
        keys = list(values)
        out.csv(keys, [[np.asarray(values[k]).item() for k in keys]], meta)
    click.echo(
        "fixed point: "
        + ", ".join(
            f"{k}={float(np.asarray(values[k])):.6g}"
            for k in ("error", "cosine", "m", "q", "kappa", "residual")
        )
    )
    if not bool(fp.valid):
        click.echo(
            "warning: the fixed point is not valid (not converged or unstable branch)", err=True
        )


# --------------------------------------------------------------------------------------
# spectral


@main.command()
@CONFIG
@OUTPUT
@FIGURE
@PROBLEM
@ALPHA
@PREPROCESSING
@click.option(
    "--alpha-max",
    default=None,
    type=POSITIVE,
    help="right end of the curve over alpha in the figure (default 3 x threshold)",
)
@click.option(
    "--points",
    default=24,
    show_default=True,
    type=click.IntRange(min=2),
    help="points of that curve",
)
@click.option(
    "--dim",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="also measure the spectral start at this dimension (0: no)",
)
@click.option(
    "--seeds",
    default=4,
    show_default=True,
    type=click.IntRange(min=2),
    help="seeds of that measurement",
)
@click.pass_context
def spectral(ctx, **p):
    """The spectral start: overlap of the top eigenvector and the weak-recovery threshold.

    \b
    Example:
      dmftjax spectral --alpha 2 --noise 0 --preprocessing trimmed --tau 4 --out results/
    prints the squared cosine, the top eigenvalue, the bulk edge and the threshold alpha_c,
    and writes results/spectral.png (squared cosine against alpha), spectral.json,
    spectral.csv. With --dim 1000 it also measures the start on random data.
    """
    import jax
    import numpy as np

    import dmftjax as dj

    spectral_theory = _api("spectral_theory")
    threshold_fn = _api("weak_recovery_threshold")
    problem = _problem(p)
    prep = _preprocessing(p)
    outputs = _figure_outputs(p, "spectral")
    names = ["theory", "threshold", "curve over alpha"] + (["measurement"] if p["dim"] else [])
    names.append("figure")
    with warnings.catch_warnings(record=True) as caught, _Stages(names, p["quiet"]) as st:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            th = spectral_theory(problem, prep)
            st.done()
            alpha_c = float(threshold_fn(problem.model, prep))
            st.done()
            hi = p["alpha_max"] or (3 * alpha_c if math.isfinite(alpha_c) else 3 * p["alpha"])
            hi = max(hi, p["alpha"] * 1.2)
            grid = np.linspace(hi / p["points"], hi, p["points"])
            curve = dj.sweep(
                problem,
                engine="spectral",
                preprocessing=prep,
                alpha=grid,
                threshold=False,
                progress=False,
                batch_size=p["points"],
            )
            st.done()
            measured = None
            if p["dim"]:
                measured = _api("spectral_simulation")(
                    problem, prep, dim=p["dim"], num_seeds=p["seeds"], key=jax.random.key(p["seed"])
                )
                st.done()
        except ValueError as err:
            _fail(str(err))
        meta = _meta(ctx, p)
        theory = {
            k: np.asarray(getattr(th, k)).item()
            for k in (
                "cosine2",
                "top_eigenvalue",
                "bulk_edge",
                "has_outlier",
                "lam_star",
                "lam_bar",
                "tau",
                "alpha",
            )
        }
        meas = None
        if measured is not None:
            meas = dict(
                cosine2=measured.cosine2,
                cosine2_stderr=measured.cosine2_stderr,
                top_eigenvalue=measured.top_eigenvalue,
                top_eigenvalue_stderr=measured.top_eigenvalue_stderr,
                converged=measured.converged,
                info=measured.info,
            )
        payload = _clean(
            dict(
                meta,
                kind="spectral",
                theory=theory,
                threshold=alpha_c,
                explanation=th.explanation,
                measured=meas,
                preprocessing_used=repr(prep),
                curve=dict(
                    alpha=grid,
                    cosine2=curve.values["cosine2"],
                    top_eigenvalue=curve.values["top_eigenvalue"],
                ),
            )
        )
        fig = _draw(payload, p)
        st.done()
    for w in caught:
        click.echo(f"warning: {_one_line(w.message)}", err=True)
    with _writing(outputs) as out:
        _write_figure(out, fig, meta, p)
        out.json(payload)
        out.csv(
            ["alpha", "cosine2", "top_eigenvalue", "bulk_edge", "has_outlier"],
            [
                [float(a), float(c), float(e), float(b), bool(h)]
                for a, c, e, b, h in zip(
                    grid,
                    curve.values["cosine2"],
                    curve.values["top_eigenvalue"],
                    curve.values["bulk_edge"],
                    curve.values["has_outlier"],
                )
            ],
            meta,
        )
    click.echo(
        f"alpha = {p['alpha']}: squared cosine {theory['cosine2']:.6g}, top eigenvalue "
        f"{theory['top_eigenvalue']:.6g}, bulk edge {theory['bulk_edge']:.6g}; "
        f"weak-recovery threshold alpha_c = {alpha_c:.6g}"
    )
    if meas is not None:
        click.echo(
            f"measured at d = {p['dim']}: squared cosine {meas['cosine2']:.4g} ± "
            f"{meas['cosine2_stderr']:.2g}"
        )
    if th.explanation:
        click.echo(th.explanation)


def _spectral_figure(grid, cos2, alpha_c, p, th, measured):
    """The spectral figure from the objects (`_draw_spectral` draws it from the JSON)."""
    meas = None
    if measured is not None:
        meas = dict(cosine2=measured.cosine2, cosine2_stderr=measured.cosine2_stderr)
    data = _clean(
        dict(
            settings=p,
            threshold=alpha_c,
            theory=dict(cosine2=th.cosine2),
            measured=meas,
            preprocessing_used=repr(_preprocessing(p)),
            curve=dict(alpha=grid, cosine2=cos2),
        )
    )
    return _draw_spectral(data, width=p.get("width", "two"))


# --------------------------------------------------------------------------------------
# sweep


@main.command("sweep")
@CONFIG
@OUTPUT
@FIGURE
@PROBLEM
@click.option(
    "--alpha",
    "alpha_grid",
    default="1:5:5",
    show_default=True,
    type=GRID,
    help="alpha grid: 1,2,3 or start:stop:num or log:start:stop:num",
)
@click.option(
    "--lam", "lam_grid", default="0,0.05,0.1", show_default=True, type=GRID, help="ridge grid"
)
@click.option(
    "--step",
    "step_grid",
    default="0.05",
    show_default=True,
    type=GRID,
    help="step-size grid (dmft engine)",
)
@click.option(
    "--algorithm",
    type=click.Choice(METHODS),
    default="gd",
    show_default=True,
    help="the method (dmft engine)",
)
@click.option(
    "--momentum",
    "momentum_grid",
    default=None,
    type=GRID,
    help="momentum grid (dmft engine, heavy-ball or nesterov; default 0.5)",
)
@click.option(
    "--init",
    "init_kind",
    type=click.Choice(["informed", "spectral"]),
    default="informed",
    show_default=True,
    help="the DMFT's start (dmft engine): informed (--overlap, --norm) or the "
    "spectral start with --preprocessing",
)
@click.option(
    "--tau",
    "tau_grid",
    default=None,
    type=GRID,
    help="grid of the preprocessing parameter (spectral engine; dmft engine with --init spectral)",
)
@click.option(
    "--engine",
    type=click.Choice(["dmft", "fixed-point", "spectral"]),
    default="dmft",
    show_default=True,
)
@click.option(
    "--steps",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="gradient steps (dmft engine)",
)
@click.option(
    "--overlap",
    default=0.5,
    show_default=True,
    type=float,
    help="initial overlap (dmft engine, informed start)",
)
@click.option(
    "--norm", default=1.0, show_default=True, type=POSITIVE, help="initial norm (dmft engine)"
)
@click.option("--samples", default=1000, show_default=True, type=click.IntRange(min=2))
@click.option("--replicas", default=2, show_default=True, type=click.IntRange(min=2))
@click.option(
    "--estimator",
    type=click.Choice(["tangent", "ibp", "windowed"]),
    default="tangent",
    show_default=True,
)
@click.option(
    "--preprocessing",
    type=click.Choice(["none", "trimmed", "clipped", "luo-alghamdi-lu", "mondelli-montanari"]),
    default="none",
    show_default=True,
    help="spectral preprocessing: the spectral engine's T, and whose weak-recovery "
    "threshold is drawn",
)
@click.option(
    "--batch-size",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="grid points per device per chunk",
)
@click.option(
    "--metric",
    default=None,
    help="quantity drawn (default: error; cosine2 for the spectral engine)",
)
@click.pass_context
def sweep_cmd(ctx, **p):
    """A grid over alpha, lam, step size (and a preprocessing parameter): vmapped,
    sharded over every device, resumable.

    \b
    Example:
      dmftjax sweep --alpha 1:5:9 --lam 0,0.05,0.1 --steps 50 --out results/
      dmftjax sweep --engine fixed-point --alpha log:0.5:8:12 --lam log:0.001:1:10
      dmftjax sweep --engine spectral --noise 0 --preprocessing trimmed \\
                    --alpha 0.5:4:15 --tau 2:10:9
    Chunks go to results/sweep-<hash>/ as they finish; an interrupted sweep, run again
    with the same command, computes only the missing points. Writes results/sweep.png
    (phase diagram, threshold drawn when a preprocessing is given), sweep.json (every
    point, the DMFT curves, settings, version, seed) and sweep.csv (one row per point).
    """
    import jax

    import dmftjax as dj

    engine = p["engine"].replace("-", "_")
    p_problem = dict(p, alpha=float(p["alpha_grid"][0]), lam=float(p["lam_grid"][0]))
    problem = _problem(p_problem)
    prep = None
    if p["preprocessing"] != "none":
        tau = None if p["tau_grid"] is None else float(p["tau_grid"][0])
        prep = _preprocessing(dict(p, tau=tau))
    alg = init = None
    axes = dict(alpha=p["alpha_grid"], lam=p["lam_grid"])
    if engine == "dmft":
        beta = None if p["momentum_grid"] is None else float(p["momentum_grid"][0])
        alg = _algorithm(dict(p, step=float(p["step_grid"][0]), momentum=beta))
        if p["init_kind"] == "spectral":
            if prep is None:
                _fail("--init spectral needs --preprocessing (e.g. mondelli-montanari)")
            init = _api("SpectralInit")(prep)
        else:
            init = _init(dict(p, init_kind="informed"))
        if len(p["step_grid"]) > 1:
            axes["step_size"] = p["step_grid"]
        if p["momentum_grid"] is not None and len(p["momentum_grid"]) > 1:
            axes["axes"] = {"algorithm.momentum": p["momentum_grid"]}
        _check_dmft_sizes(p)
    else:
        dmft_only = [
            f"--{name}"
            for name in ("steps", "overlap", "norm", "samples", "replicas", "estimator")
            if ctx.get_parameter_source(name) not in (None, _DEFAULT)
        ]
        if ctx.get_parameter_source("step_grid") not in (None, _DEFAULT):
            dmft_only.append("--step")
        if dmft_only:
            _fail(
                f"{', '.join(dmft_only)}: for the dmft engine only, not used by the "
                f"{p['engine']} engine"
            )
        if p["momentum_grid"] is not None or p["algorithm"] != "gd":
            _fail(f"--algorithm and --momentum are for the dmft engine (not {p['engine']})")
        if p["init_kind"] != "informed":
            _fail(f"--init is for the dmft engine (not {p['engine']})")
    if engine == "spectral":
        axes.pop("lam")
        if prep is None:
            _fail("the spectral engine needs --preprocessing (e.g. trimmed)")
    if p["tau_grid"] is not None:
        if prep is None:
            _fail("--tau needs --preprocessing")
        if engine == "dmft" and p["init_kind"] == "spectral":
            if len(p["tau_grid"]) > 1:
                extra = axes.setdefault("axes", {})
                from dmftjax._sweep import preprocessing_parameter

                extra[f"init.preprocessing.{preprocessing_parameter(prep)}"] = p["tau_grid"]
        elif engine != "spectral":
            _fail(
                "--tau is a grid only for the spectral engine (or the dmft engine with "
                "--init spectral)"
            )
        else:
            axes["prep"] = p["tau_grid"]
    metric = p["metric"] or ("cosine2" if engine == "spectral" else "error")
    from dmftjax._sweep import sweep_quantities

    stored = sweep_quantities(engine)
    if metric not in stored:  # found before the sweep runs, not after
        _fail(
            f"--metric {metric!r} is not stored by the {p['engine']} engine; choose one of "
            f"{', '.join(sorted(stored))}"
        )
    outputs = _figure_outputs(p, "sweep")
    done = {"chunks": 0}
    try:
        result = dj.sweep(
            problem,
            alg,
            init,
            **axes,
            preprocessing=prep,
            engine=engine,
            num_samples=p["samples"],
            num_replicas=p["replicas"],
            estimator=p["estimator"],
            key=jax.random.key(p["seed"]),
            batch_size=p["batch_size"],
            out=outputs.folder,
            progress=not p["quiet"],
            after_chunk=lambda n, k: done.update(chunks=done["chunks"] + 1),
        )
    except ValueError as err:
        _fail(str(err))
    except KeyboardInterrupt:
        raise click.ClickException(
            f"interrupted after {done['chunks']} chunks; they are saved in "
            f"{outputs.folder}/ (sweep-<hash>): run the same command again to resume"
        ) from None
    if metric not in result.values:
        _fail(f"--metric {metric!r} is not stored; choose one of {sorted(result.values)}")
    meta = _meta(ctx, p)
    meta["sweep_hash"] = result.hash
    meta["sweep_folder"] = str(result.folder)
    payload = _clean(dict(meta, kind="sweep", even=_is_even(problem), sweep=result.to_dict()))
    fig = _draw(payload, p)
    with _writing(outputs) as out:
        _write_figure(out, fig, meta, p)
        out.json(payload)
        out.csv(*result.rows(), meta)
    skipped = result.info["num_points"] - result.computed
    click.echo(
        f"{result.info['num_points']} points ({result.computed} computed, {skipped} read "
        f"back from {result.folder}) on {len(result.info['devices'])} device(s)"
    )


# --------------------------------------------------------------------------------------
# tune


@main.command()
@CONFIG
@OUTPUT
@FIGURE
@PROBLEM
@ALPHA
@LAM
@click.option(
    "--param",
    type=click.Choice(["lam", "step", "momentum"]),
    default="lam",
    show_default=True,
    help="lam: asymptotic error over the ridge (implicit gradients through the "
    "fixed point); step, momentum: error after --steps steps of --algorithm "
    "over its step size or its momentum (gradients through the DMFT)",
)
@click.option(
    "--start-value",
    default=None,
    type=POSITIVE,
    help="starting value (default: --lam for lam, --step for step)",
)
@click.option(
    "--iterations",
    default=40,
    show_default=True,
    type=click.IntRange(min=1),
    help="optimiser steps",
)
@click.option(
    "--learning-rate",
    default=None,
    type=POSITIVE,
    help="Adam learning rate on the log of the parameter (default 0.1 / 0.05)",
)
@click.option(
    "--grid-points",
    default=16,
    show_default=True,
    type=click.IntRange(min=0),
    help="points of the objective drawn for reference (0: none)",
)
@ALGORITHM
@click.option("--overlap", default=0.5, show_default=True, type=float)
@click.option("--norm", default=1.0, show_default=True, type=POSITIVE)
@click.option("--samples", default=1000, show_default=True, type=click.IntRange(min=2))
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(min=1))
@click.pass_context
def tune(ctx, **p):
    """Tune the ridge strength or the step size by gradient descent on the theory (optax).

    \b
    Example:
      dmftjax tune --param lam --alpha 3 --noise 0.1 --out results/
      dmftjax tune --param step --alpha 3 --lam 0.05 --steps 30 --start-value 0.02
    writes results/tune.png (objective, optimiser path, tuned value), tune.json (the
    path, settings, version, seed) and tune.csv (the path).
    """
    import jax
    import numpy as np
    import optax

    problem = _problem(p)
    _api("plot_tuning")  # before the optimisation: this build can draw its figure
    outputs = _figure_outputs(p, "tune")
    names = ["tune (compile + optimise)"] + (["objective on a grid"] if p["grid_points"] else [])
    names.append("figure")
    with _Stages(names, p["quiet"]) as st:
        try:
            if p["param"] == "lam":
                x0 = p["start_value"] or (p["lam"] if p["lam"] > 0 else 0.1)
                opt = optax.adam(p["learning_rate"] or 0.1)
                res = _api("tune_ridge")(
                    problem, lam0=x0, steps=p["iterations"], optimizer=opt, progress=not p["quiet"]
                )
            else:
                if p["samples"] <= p["steps"] + 3:
                    _fail(f"--samples {p['samples']} must exceed --steps + 3")
                init = _init(dict(p, init_kind="informed", preprocessing="trimmed", tau=None))
                field = "step_size" if p["param"] == "step" else "momentum"
                if field == "momentum" and p["algorithm"] == "gd":
                    _fail("--param momentum needs --algorithm heavy-ball or nesterov")
                x0 = p["start_value"] or (
                    p["step"] if field == "step_size" else _algorithm(p).momentum
                )
                opt = optax.adam(p["learning_rate"] or 0.05)
                res = _api("tune_algorithm")(
                    problem,
                    _algorithm(p),
                    init,
                    field=field,
                    start=x0,
                    num_samples=p["samples"],
                    num_replicas=p["replicas"],
                    key=jax.random.key(p["seed"]),
                    steps=p["iterations"],
                    optimizer=opt,
                    progress=not p["quiet"],
                )
            st.done()
            transform = "logit" if p["param"] == "momentum" else "log"

            def to_value(u):  # the tuned parameter from the optimiser's unconstrained one
                return _api("tuned_value")(u, transform)

            tuned = float(to_value(np.asarray(res.params)))
            path_x = to_value(np.asarray(res.path_params, dtype=float).ravel())
            grid = vals = None
            if p["grid_points"] and p["param"] == "momentum":
                grid = np.linspace(0.0, max(0.95, path_x.max(), tuned), p["grid_points"])
            elif p["grid_points"]:
                lo = min(path_x.min(), tuned) / 3
                hi = max(path_x.max(), tuned) * 3
                grid = np.geomspace(lo, hi, p["grid_points"])
            if p["grid_points"]:
                vals = _tune_grid(p, problem, grid)
                st.done()
        except ValueError as err:
            _fail(str(err))
        if grid is None:
            grid, vals = path_x, np.asarray(res.path_values)
        meta = _meta(ctx, p)
        # the optimiser's record as plot_tuning reads it (unconstrained parameters)
        optimiser = dict(
            params=np.asarray(res.params, dtype=float),
            value=res.value,
            best_params=np.asarray(res.best_params, dtype=float),
            best_value=res.best_value,
            path_params=np.asarray(res.path_params, dtype=float),
            path_values=res.path_values,
            path_grads=res.path_grads,
            transform=transform,
        )
        payload = _clean(
            dict(
                meta,
                kind="tune",
                even=_is_even(problem),
                tuned=tuned,
                value=res.value,
                best=float(to_value(np.asarray(res.best_params))),
                best_value=res.best_value,
                path=path_x,
                path_values=res.path_values,
                path_grad_norms=res.path_grads,
                grid=grid,
                grid_values=vals,
                optimiser=optimiser,
            )
        )
        fig = _draw(payload, p)
        st.done()
    with _writing(outputs) as out:
        _write_figure(out, fig, meta, p)
        out.json(payload)
        out.csv(
            ["iteration", p["param"], "objective", "grad_norm"],
            [
                [i, float(x), float(v), float(g)]
                for i, (x, v, g) in enumerate(zip(path_x, res.path_values, res.path_grads))
            ],
            meta,
        )
    click.echo(
        f"tuned {p['param']} = {tuned:.6g} (objective {res.value:.6g}; best seen "
        f"{float(to_value(np.asarray(res.best_params))):.6g} at {res.best_value:.6g})"
    )


def _tune_grid(p, problem, grid):
    import jax
    import numpy as np

    import dmftjax as dj

    if p["param"] == "lam":
        fps = _api("fixed_point_sweep")(problem, lam=grid)
        vals = np.where(np.asarray(fps.valid), np.asarray(fps.error), np.nan)
        return vals
    axis = "algorithm.step_size" if p["param"] == "step" else "algorithm.momentum"
    res = dj.sweep(
        problem,
        _algorithm(p),
        dj.InformedInit(p["overlap"], p["norm"]),
        axes={axis: grid},
        num_samples=p["samples"],
        num_replicas=max(2, p["replicas"]),
        key=jax.random.key(p["seed"]),
        threshold=False,
        progress=False,
        batch_size=len(grid),
    )
    return np.asarray(res.values["error"])


# --------------------------------------------------------------------------------------
# plot


def _read_result(path: Path) -> dict:
    """A saved result of a subcommand, checked to be one `dmftjax plot` can draw."""
    hint = "RESULT"
    if not path.exists():
        raise click.BadParameter(f"{path}: no such file", param_hint=hint)
    if path.is_dir():
        raise click.BadParameter(f"{path} is a folder, not a result file", param_hint=hint)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise click.BadParameter(
            f"cannot read {path}: {getattr(err, 'strerror', None) or err}", param_hint=hint
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise click.BadParameter(f"{path} is not JSON ({err})", param_hint=hint) from None
    if not isinstance(data, dict) or "dmftjax_version" not in data:
        raise click.BadParameter(
            f"{path} is not a dmftjax result (no 'dmftjax_version'; "
            "results are the .json files the subcommands write)",
            param_hint=hint,
        )
    kind = data.get("kind")
    if kind is None:
        raise click.BadParameter(
            f"{path} has no 'kind' (written by dmftjax {data['dmftjax_version']} before "
            "results recorded which subcommand made them): run that subcommand again to "
            "redraw it",
            param_hint=hint,
        )
    if kind not in _DRAWERS:
        raise click.BadParameter(
            f"{path}: unknown kind of result {kind!r} (known: {', '.join(sorted(_DRAWERS))})",
            param_hint=hint,
        )
    missing = [k for k in _META_NEEDS + _NEEDS[kind] if k not in data]
    if missing:
        raise click.BadParameter(
            f"{path} ({kind} result) lacks {', '.join(map(repr, missing))}: "
            "run its subcommand again to redraw it",
            param_hint=hint,
        )
    return data


def _plot_names(kind: str, text: str | None):
    if not text:
        return None
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    what = _NAMED.get(kind)
    if what is None:
        raise click.BadParameter(
            f"a {kind} result has one fixed figure: --name is for "
            f"{', '.join(sorted(_NAMED))} results",
            param_hint="--name",
        )
    if what == "metric" and len(names) != 1:
        raise click.BadParameter("a sweep draws one quantity: give one name", param_hint="--name")
    if what == "panels":
        from dmftjax._trajectory import OBSERVABLES

        bad = [n for n in names if n not in OBSERVABLES]
        if bad:
            raise click.BadParameter(
                f"{', '.join(bad)}: not an observable (choose from {', '.join(OBSERVABLES)})",
                param_hint="--name",
            )
    return tuple(names)


@main.command("plot")
@CONFIG
@click.argument("result", type=click.Path(path_type=Path))
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="folder for the figure (default: the folder of RESULT)",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="replace an earlier figure of the same name (default: the next free name)",
)
@FIGURE
@click.option(
    "--name",
    default=None,
    help="what to draw: observables, comma-separated, one panel each (predict, "
    "simulate, fixed-point results), or the quantity of a sweep's diagram "
    "(default: what the subcommand drew)",
)
@click.pass_context
def plot_cmd(ctx, result, **p):
    """Redraw the figure of a saved result from its JSON file alone.

    
    Example:
      dmftjax predict --alpha 3 --steps 60 --out results/
      dmftjax plot results/predict.json --format pdf --width one
    writes results/predict.pdf: the figure `dmftjax predict` drew (same function, same
    data), in another format, width or resolution. Works on the JSON of predict,
    simulate, fixed-point (with a DMFT start), spectral, sweep, tune and demo.
    """
    data = _read_result(result)
    kind = data["kind"]
    names = _plot_names(kind, p["name"])
    if kind == "sweep" and names and names[0] not in (data["sweep"].get("values") or {}):
        raise click.BadParameter(
            f"{names[0]!r} is not stored in this sweep; it has "
            f"{', '.join(sorted(data['sweep']['values']))}",
            param_hint="--name",
        )
    folder = p["out"] if p["out"] is not None else result.parent
    outputs = _Outputs(folder, result.stem, [p["format"]], p["overwrite"])
    try:
        fig = _draw(data, p, names=names)
    except click.ClickException:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as err:
        what = f"missing {err}" if isinstance(err, KeyError) else _one_line(err)
        raise click.BadParameter(
            f"{result} ({kind} result) cannot be drawn: {what}", param_hint="RESULT"
        ) from None
    import dmftjax
    from dmftjax._provenance import provenance

    meta = {k: v for k, v in data.items() if k in _META_KEYS}
    meta["redrawn"] = {
        "by": ctx.command_path,
        "from": str(result),
        "dmftjax_version": dmftjax.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "provenance": provenance(),
    }
    with _writing(outputs) as out:
        _write_figure(out, fig, meta, p)


# the keys `_meta` writes (a redrawn figure's metadata: the run's own, and the redraw)
_META_KEYS = (
    "command",
    "dmftjax_version",
    "jax_version",
    "seed",
    "settings",
    "config_file",
    "devices",
    "x64",
    "created",
    "provenance",
    "observables",
    "sweep_hash",
    "sweep_folder",
    "kind",
)


if __name__ == "__main__":
    main()
