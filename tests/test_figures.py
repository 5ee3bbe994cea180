"""Figures a referee accepts: mathtext labels on every axis, legends that say what the
bands and bars are, journal-column widths, the --format/--dpi/--width/--footer options,
the phase-diagram boundary through the computed thresholds only, and `dmftjax plot`
redrawing a saved result from its JSON alone (the same figure as the subcommand's)."""

import json
import struct

import matplotlib.pyplot as plt
import numpy as np
import pytest
from click.testing import CliRunner

from dmftjax import cli, plotting
from dmftjax._sweep import SweepResult
from dmftjax._trajectory import OBSERVABLES, Trajectory
from dmftjax.cli import main

TINY = ["--steps", "5", "--samples", "64", "--replicas", "2", "-q"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result):
    assert result.exit_code != 0, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error"), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# --------------------------------------------------------------------------------------
# what a figure holds, to compare two figures and to check their text


def _arrays(c):
    out = [np.asarray(c.get_offsets(), dtype=float)]
    out += [np.asarray(p.vertices, dtype=float) for p in c.get_paths()]
    arr = c.get_array()
    if arr is not None:
        out.append(np.ma.filled(np.asarray(arr, dtype=float), np.nan))
    return out


def summary(fig):
    axes = []
    for ax in fig.axes:
        leg = ax.get_legend()
        axes.append(
            dict(
                colorbar=hasattr(ax, "_colorbar"),
                title=ax.get_title(),
                xlabel=ax.get_xlabel(),
                ylabel=ax.get_ylabel(),
                xscale=ax.get_xscale(),
                yscale=ax.get_yscale(),
                xlim=ax.get_xlim(),
                ylim=ax.get_ylim(),
                lines=[np.asarray(ln.get_xydata(), dtype=float) for ln in ax.lines],
                line_styles=[(ln.get_linestyle(), ln.get_marker()) for ln in ax.lines],
                collections=[a for c in ax.collections for a in _arrays(c)],
                legend=[] if leg is None else [t.get_text() for t in leg.get_texts()],
            )
        )
    legends = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    legends += [leg.get_title().get_text() for leg in fig.legends]
    return dict(
        size=tuple(fig.get_size_inches()),
        axes=axes,
        legends=legends,
        texts=[t.get_text() for t in fig.texts],
    )


def assert_same(a, b):
    assert a["size"] == b["size"]
    assert a["legends"] == b["legends"] and a["texts"] == b["texts"]
    assert len(a["axes"]) == len(b["axes"])
    for x, y in zip(a["axes"], b["axes"]):
        assert x.keys() == y.keys()
        for k in x:
            if k in ("lines", "collections"):
                assert len(x[k]) == len(y[k]), k
                for u, v in zip(x[k], y[k]):
                    np.testing.assert_array_equal(u, v)
            else:
                assert x[k] == y[k], k


@pytest.fixture
def captured(monkeypatch):
    """The figures the command line writes, summarised after they are written."""
    figures = []
    original = cli._Outputs.figure

    def figure(self, fig, meta, fmt="png", dpi=300.0, footer=True):
        original(self, fig, meta, fmt, dpi, footer)
        figures.append(summary(fig))

    monkeypatch.setattr(cli._Outputs, "figure", figure)
    return figures


def assert_labelled(s):
    """Every panel has a mathtext x- and y-label (a colour bar: a mathtext label)."""
    for ax in s["axes"]:
        if ax["colorbar"]:
            assert "$" in ax["ylabel"] or "$" in ax["xlabel"], ax
            continue
        assert ax["xlabel"].strip() and ax["ylabel"].strip(), ax
        assert "$" in ax["xlabel"] and "$" in ax["ylabel"], ax


def _boxes_overlap(fig):
    """Pairs of text boxes (titles, axis labels, tick labels, legends, footer) of
    different elements that overlap on the drawn figure."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = []
    for i, ax in enumerate(fig.axes):
        for name, t in (
            ("title", ax.title),
            ("xlabel", ax.xaxis.label),
            ("ylabel", ax.yaxis.label),
        ):
            if t.get_text():
                boxes.append(((i, name), t.get_window_extent(r)))
        frame = ax.get_window_extent(r)
        for name, ticks in (("xticks", ax.get_xticklabels()), ("yticks", ax.get_yticklabels())):
            for t in ticks:
                if not (t.get_text() and t.get_visible()):
                    continue
                box = t.get_window_extent(r)
                c = 0.5 * (box.x0 + box.x1) if name == "xticks" else 0.5 * (box.y0 + box.y1)
                lo, hi = (frame.x0, frame.x1) if name == "xticks" else (frame.y0, frame.y1)
                if lo - 1 <= c <= hi + 1:  # drawn (labels of ticks off the axis are not)
                    boxes.append(((i, name), box))
    for j, leg in enumerate(fig.legends):
        boxes.append((("legend", j), leg.get_window_extent(r)))
    for j, t in enumerate(fig.texts):
        boxes.append((("text", j), t.get_window_extent(r)))
    bad = []
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            (ka, ba), (kb, bb) = boxes[a], boxes[b]
            if ka == kb:
                continue
            w = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
            h = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
            if w > 0.5 and h > 0.5:
                bad.append((ka, kb))
    return bad


# --------------------------------------------------------------------------------------
# the label table and compare(), without the engines


def _traj(source, T=30, dim=None, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(T + 1)
    values = {n: np.exp(-t / 8.0) + 0.01 * rng.random(T + 1) for n in OBSERVABLES}
    values["cosine"] = 1 - 0.5 * np.exp(-t / 5.0)
    stderr = {n: 0.01 * np.ones(T + 1) for n in OBSERVABLES}
    info = {} if dim is None else {"dim": dim}
    return Trajectory(times=t, values=values, stderr=stderr, source=source, info=info)


def test_style_sets_and_restores_only_its_own_keys():
    """Jupyter's inline backend switches interactive mode on when it loads, which happens at
    the first figure, often one of ours: that change outlives the style block (with
    `rc_context`, every later pyplot figure of the notebook showed nothing)."""
    before = plt.isinteractive()
    size = plt.rcParams["font.size"]
    try:
        with plotting.style():
            assert plt.rcParams["font.size"] == plotting.RC["font.size"]
            plt.interactive(not before)
        assert plt.isinteractive() is (not before)
        assert plt.rcParams["font.size"] == size
    finally:
        plt.interactive(before)


def test_labels_follow_the_parity_of_the_link():
    assert plotting.label("error", even=True) == r"$\min_\pm \|\theta^t \mp \theta^*\|^2/d$"
    assert plotting.label("error", even=False) == r"$\|\theta^t - \theta^*\|^2/d$"
    assert plotting.label("cosine", even=True) == r"$|\cos\angle(\theta^t,\theta^*)|$"
    assert plotting.label("cosine", even=False) == r"$\cos\angle(\theta^t,\theta^*)$"
    for name in OBSERVABLES:  # every observable has a label and a title in the one table
        assert name in plotting.LABELS and plotting.label(name).strip()
    assert "$" in plotting.label("train_loss") and "sum" in plotting.label("train_loss")
    assert (
        plotting.label("error", True, r"\infty")
        == r"$\min_\pm \|\theta^{\infty} \mp \theta^*\|^2/d$"
    )
    assert plotting.time_label(np.arange(4)) == "step $t$"
    assert plotting.time_label(np.arange(4) * 0.1) == "time $t$"
    assert plotting.legend_label("dmft") == r"DMFT, $d = \infty$ (band: ±2 s.e.)"
    assert plotting.legend_label("simulation", 1000) == "simulation, $d = 1000$ (bars: ±2 s.e.)"


@pytest.mark.parametrize("width, inches, grid", [("one", 3.4, (2, 2)), ("two", 7.0, (1, 4))])
def test_compare_fits_a_column_with_labelled_panels(width, inches, grid):
    fig = plotting.compare(
        _traj("dmft"),
        _traj("simulation", dim=1000),
        width=width,
        even=True,
        title="a title, with parts, that is long enough to wrap",
    )
    assert fig.get_figwidth() == pytest.approx(inches)
    assert fig.get_layout_engine().__class__.__name__ == "ConstrainedLayoutEngine"
    assert len(fig.axes) == 4
    xs = {round(ax.get_position().x0, 3) for ax in fig.axes}
    ys = {round(ax.get_position().y0, 3) for ax in fig.axes}
    assert (len(ys), len(xs)) == grid
    s = summary(fig)
    assert_labelled(s)
    assert s["axes"][0]["ylabel"] == r"$\min_\pm \|\theta^t \mp \theta^*\|^2/d$"
    assert s["axes"][0]["xlabel"] == "step $t$"
    text = " ".join(s["legends"])
    assert "DMFT, $d = \\infty$ (band: ±2 s.e.)" in text
    assert "simulation, $d = 1000$ (bars: ±2 s.e.)" in text
    for ax in fig.axes:  # 8-9 pt text
        for t in [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_yticklabels()]:
            assert 8 <= t.get_fontsize() <= 9
    assert not _boxes_overlap(fig)
    plt.close(fig)


def test_compare_with_odd_link_and_a_footer_overlaps_nothing():
    fig = plotting.compare(_traj("dmft"), None, names=OBSERVABLES, width="two", even=False)
    assert len(fig.axes) == len(OBSERVABLES)
    assert fig.axes[2].get_ylabel() == r"$\|\theta^t - \theta^*\|^2/d$"
    h = fig.get_figheight()
    plotting.add_footer(
        fig,
        plotting.footer_text(
            "dmftjax x.y predict, seed 0: " + ", ".join(f"k{i}=v{i}" for i in range(40)), fig
        ),
    )
    assert fig.get_figheight() > h and fig.get_figwidth() == pytest.approx(7.0)
    assert not _boxes_overlap(fig)
    plt.close(fig)


# --------------------------------------------------------------------------------------
# the phase-diagram boundary


def _boundary_sweep(thr):
    axes = {"alpha": np.array([1.0, 2.0, 3.0]), "prep": np.array([2.0, 4.0, 6.0, 8.0, 10.0])}
    values = {"cosine2": np.linspace(0, 1, 15).reshape(3, 5)}
    return SweepResult(
        axes=axes,
        values=values,
        curves={},
        hash="x",
        settings={"prep_field": "tau", "preprocessing": {"type": "Trimmed"}},
        threshold=np.asarray(thr, dtype=float),
    )


def test_the_boundary_is_cut_where_it_leaves_the_alpha_range_and_never_invented():
    # alpha_c(tau): 1.5, 2.5, 5.0 (beyond the swept alphas), inf (no weak recovery), 2.0
    thr = np.array([1.5, 2.5, 5.0, np.inf, 2.0])
    taus = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
    fig = plotting.plot_phase_diagram(_boundary_sweep(thr), "cosine2", x="alpha", y="prep")
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert (lo, hi) == pytest.approx((0.5, 3.5))
    (line,) = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    x, y = (np.asarray(v, dtype=float) for v in line.get_data())
    ok = np.isfinite(x)
    # everything drawn lies inside the axes
    assert np.all((x[ok] >= lo - 1e-12) & (x[ok] <= hi + 1e-12))
    # every drawn point is on the polyline through the computed thresholds
    for xi, yi in zip(x[ok], y[ok]):
        k = np.searchsorted(taus, yi, side="right") - 1
        k = min(k, len(taus) - 2)
        s = (yi - taus[k]) / (taus[k + 1] - taus[k])
        assert np.isfinite(thr[k]) and np.isfinite(thr[k + 1]) or s in (0.0, 1.0)
        assert xi == pytest.approx(thr[k] + s * (thr[k + 1] - thr[k]))
    # the one point at the right limit is the crossing of the segment (2.5, 4) - (5, 6)
    at_limit = y[ok][np.isclose(x[ok], hi)]
    assert at_limit == pytest.approx([4.0 + (3.5 - 2.5) / (5.0 - 2.5) * 2.0])
    # nothing is drawn near tau = 8 (threshold infinite): no segment bridges 6 -> 10
    assert not np.any(ok & (y > 6.0) & (y < 10.0))
    # the computed thresholds inside the range are marked, the others are not
    (marks,) = [ln for ln in ax.lines if ln.get_marker() == "o"]
    np.testing.assert_array_equal(marks.get_xdata(), [1.5, 2.5, 2.0])
    np.testing.assert_array_equal(marks.get_ydata(), [2.0, 4.0, 10.0])
    assert "weak recovery" in ax.get_legend().get_texts()[0].get_text()
    plt.close(fig)


def test_clip_polyline():
    x, y = plotting.clip_polyline([0.0, 2.0, 4.0, 2.0], [0.0, 1.0, 2.0, 3.0], 1.0, 3.0)
    np.testing.assert_allclose(x, [1.0, 2.0, 3.0, np.nan, 3.0, 2.0])
    np.testing.assert_allclose(y, [0.5, 1.0, 1.5, np.nan, 2.5, 3.0])
    x, y = plotting.clip_polyline([1.0, np.nan, 2.0], [0.0, 1.0, 2.0], 0.0, 5.0)
    assert x.size == 0  # isolated points make no line (they are marked separately)


# --------------------------------------------------------------------------------------
# the command line: formats, resolution, width, footer, and `dmftjax plot`


def _png_size(path):
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG")
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    out = tmp_path_factory.mktemp("predict")
    res = run("predict", *TINY, "--width", "one", "--dpi", "100", "--out", out)
    assert res.exit_code == 0, res.output
    return out


def test_formats_resolution_width_and_footer(predicted, tmp_path, captured):
    # --width one --dpi 100: 3.4 in at 100 dpi
    w, h = _png_size(predicted / "predict.png")
    assert w == 340 and h > 200
    data = json.loads((predicted / "predict.json").read_text())
    assert data["kind"] == "predict" and data["even"] is True
    assert {"settings", "provenance", "observables"} <= set(data)
    assert data["settings"]["width"] == "one" and data["settings"]["dpi"] == 100.0

    res = run("predict", *TINY, "--format", "pdf", "--out", tmp_path / "pdf")
    assert res.exit_code == 0, res.output
    pdf = (tmp_path / "pdf" / "predict.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"dmftjax" in pdf
    assert sorted(p.name for p in (tmp_path / "pdf").iterdir()) == [
        "predict.csv",
        "predict.json",
        "predict.pdf",
    ]
    two = captured[-1]
    assert two["size"][0] == pytest.approx(7.0)
    assert any("seed 0:" in t for t in two["texts"])  # the footer

    res = run("predict", *TINY, "--format", "svg", "--no-footer", "--out", tmp_path / "svg")
    assert res.exit_code == 0, res.output
    svg = (tmp_path / "svg" / "predict.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "<dc:title>" in svg
    assert not any("seed 0:" in t for t in captured[-1]["texts"])
    assert captured[-1]["size"][1] < two["size"][1]  # no footer strip

    res = run("predict", *TINY, "--dpi", "0", "--out", tmp_path / "x")
    assert "dpi" in one_line_error(res) and not (tmp_path / "x").exists()
    # the default: 300 dpi, two columns
    res = run("predict", *TINY, "--out", tmp_path / "d")
    assert res.exit_code == 0, res.output
    assert _png_size(tmp_path / "d" / "predict.png")[0] == 2100


def test_plot_redraws_predict(predicted, tmp_path, captured):
    res = run("predict", *TINY, "--width", "one", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    original = captured[-1]
    assert_labelled(original)
    assert any("±2 s.e." in t for t in original["legends"])
    res = run("plot", tmp_path / "predict.json", "--width", "one", "--out", tmp_path / "again")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "again" / "predict.png").exists()
    assert_same(original, captured[-1])
    # next to the result by default, never over the earlier figure
    res = run("plot", tmp_path / "predict.json", "--width", "one")
    assert res.exit_code == 0 and (tmp_path / "predict-1.png").exists()
    # other choices: the width, the panels, the format, the footer
    res = run(
        "plot",
        tmp_path / "predict.json",
        "--name",
        "overlap,norm",
        "--format",
        "svg",
        "--no-footer",
        "--out",
        tmp_path / "names",
    )
    assert res.exit_code == 0, res.output
    s = captured[-1]
    assert len(s["axes"]) == 2 and s["axes"][0]["ylabel"] == r"$\langle\theta^*,\theta^t\rangle/d$"
    assert s["size"][0] == pytest.approx(7.0) and not s["texts"]
    assert (tmp_path / "names" / "predict.svg").exists()


def test_plot_redraws_simulate_with_compare(tmp_path, captured):
    res = run("simulate", "--compare", *TINY, "--dim", "40", "--seeds", "2", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    original = captured[-1]
    assert_labelled(original)
    text = " ".join(original["legends"])
    assert "DMFT, $d = \\infty$ (band: ±2 s.e.)" in text
    assert "simulation, $d = 40$ (bars: ±2 s.e.)" in text
    res = run("plot", tmp_path / "simulate.json", "--out", tmp_path / "again")
    assert res.exit_code == 0, res.output
    assert_same(original, captured[-1])


def test_plot_redraws_a_sweep_and_the_spectral_start(tmp_path, captured):
    res = run(
        "sweep",
        "--engine",
        "spectral",
        "--noise",
        "0",
        "--preprocessing",
        "trimmed",
        "--alpha",
        "1,2.5",
        "--tau",
        "3,6",
        "--out",
        tmp_path / "sweep",
        "-q",
    )
    assert res.exit_code == 0, res.output
    original = captured[-1]
    assert_labelled(original)
    assert any(ax["colorbar"] for ax in original["axes"])
    data = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert data["kind"] == "sweep" and "sweep" in data
    res = run("plot", tmp_path / "sweep" / "sweep.json", "--out", tmp_path / "again")
    assert res.exit_code == 0, res.output
    assert_same(original, captured[-1])
    # --name: another stored quantity of the sweep; one that is not stored is refused
    res = run(
        "plot",
        tmp_path / "sweep" / "sweep.json",
        "--name",
        "top_eigenvalue",
        "--out",
        tmp_path / "again",
    )
    assert res.exit_code == 0, res.output
    assert any("top eigenvalue" in ax["ylabel"] for ax in captured[-1]["axes"])
    line = one_line_error(
        run("plot", tmp_path / "sweep" / "sweep.json", "--name", "mse", "--out", tmp_path / "again")
    )
    assert "mse" in line

    res = run(
        "spectral",
        "--alpha",
        "2",
        "--noise",
        "0",
        "--points",
        "6",
        "--width",
        "one",
        "--out",
        tmp_path / "spectral",
        "-q",
    )
    assert res.exit_code == 0, res.output
    original = captured[-1]
    assert_labelled(original)
    assert original["size"][0] == pytest.approx(3.4)
    res = run(
        "plot",
        tmp_path / "spectral" / "spectral.json",
        "--width",
        "one",
        "--out",
        tmp_path / "again",
    )
    assert res.exit_code == 0, res.output
    assert_same(original, captured[-1])


def test_plot_takes_its_settings_from_a_config_file(predicted, tmp_path):
    cfg = tmp_path / "figures.toml"
    cfg.write_text('[plot]\nformat = "pdf"\nwidth = "one"\nfooter = false\n')
    res = run("plot", predicted / "predict.json", "--config", cfg, "--out", tmp_path)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "predict.pdf").read_bytes().startswith(b"%PDF")
    cfg.write_text("dim = 3\n")  # a setting `plot` does not use is refused
    assert "not used by `dmftjax plot`" in one_line_error(
        run("plot", predicted / "predict.json", "--config", cfg, "--out", tmp_path / "x")
    )


def test_plot_refuses_what_it_cannot_draw(predicted, tmp_path):
    good = json.loads((predicted / "predict.json").read_text())
    cases = {}
    (tmp_path / "text.json").write_text("not json")
    cases["text.json"] = "not JSON"
    (tmp_path / "other.json").write_text('{"a": 1}')
    cases["other.json"] = "not a dmftjax result"
    (tmp_path / "list.json").write_text("[1, 2]")
    cases["list.json"] = "not a dmftjax result"
    (tmp_path / "old.json").write_text(json.dumps({k: v for k, v in good.items() if k != "kind"}))
    cases["old.json"] = "no 'kind'"
    (tmp_path / "unknown.json").write_text(json.dumps(dict(good, kind="histogram")))
    cases["unknown.json"] = "unknown kind"
    (tmp_path / "lacking.json").write_text(
        json.dumps({k: v for k, v in good.items() if k != "dmft"})
    )
    cases["lacking.json"] = "lacks 'dmft'"
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00\x81")
    cases["binary.json"] = "binary.json"
    cases["missing.json"] = "no such file"
    for name, needle in cases.items():
        line = one_line_error(run("plot", tmp_path / name, "--out", tmp_path / "o"))
        assert needle in line, (name, line)
    assert "folder" in one_line_error(run("plot", tmp_path, "--out", tmp_path / "o"))
    assert "observable" in one_line_error(
        run("plot", predicted / "predict.json", "--name", "colour", "--out", tmp_path / "o")
    )
    assert not (tmp_path / "o").exists()
    assert "RESULT" in one_line_error(run("plot"))  # no file given


def test_fixed_point_without_a_figure_refuses_figure_options(tmp_path):
    line = one_line_error(
        run("fixed-point", "--start", "default", "--format", "pdf", "--out", tmp_path / "o")
    )
    assert "--format" in line and "no figure" in line
    assert not (tmp_path / "o").exists()
