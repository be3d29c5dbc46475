"""What a run leaves behind: ``--json`` writes every figure of the run and what it ran on
(``backprop.bench.record``), ``--plot`` draws the ratios (``backprop.bench.plot``); both are
checked before the run, and a figure that was not measured is null, not NaN."""

import importlib.util
import json
import math
import statistics
import sys

import pytest

from backprop import _core, bench
from backprop.bench import record

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed"
)
TINY = ["--scale", "0.001", "--repeats", "2", "--workloads", "W1,W2", "--trainers",
        "backprop,numpy", "--gemm-size", "32", "--no-progress"]  # fmt: skip


@pytest.fixture
def without_peers(monkeypatch):
    """PyTorch and scikit-learn count as not installed: the header of a run would otherwise
    import both (seconds), for their versions."""
    for trainer in (bench.TorchTrainer, bench.SklearnTrainer):
        monkeypatch.setattr(trainer, "available", classmethod(lambda cls: False))


def test_json_holds_every_figure_and_the_machine(tmp_path, capsys, without_peers):
    path = tmp_path / "run.json"
    assert bench.main([*TINY, "--json", str(path)]) == 0
    assert f"figures written to {path}" in capsys.readouterr().out
    doc = json.loads(path.read_text())
    assert doc["format"] == record.FORMAT and doc["command"] == ["backprop", "bench", *TINY,
                                                                  "--json", str(path)]  # fmt: skip
    tables = doc["tables"]
    assert (tables["repeats"], tables["scale"]) == (2, 0.001)
    rows = {(row["workload"], row["trainer"]): row for row in tables["workloads"]}
    peak = tables["peak"]
    assert set(rows) == {(w, t) for w in ("W1", "W2") for t in ("backprop", "numpy")}
    for row in rows.values():
        assert len(row["seconds"]) == 2 and row["median"] == statistics.median(row["seconds"])
        assert row["samples_per_second"] > 0 and row["gflops"] > 0
        speed = row["needed_flops"] / row["median"] / 1e9
        assert 0 < row["fraction_of_peak"] == pytest.approx(speed / peak["gflops"]["float64"])
    w1 = rows["W1", "numpy"]["median"] / rows["W1", "backprop"]["median"]
    assert tables["ratios"]["W1 tiny-online"] == {"numpy": pytest.approx(w1)}
    assert tables["gemm"]["size"] == 32 and tables["gemm"]["gflops"] > 0
    assert peak["target"] == _core.TARGET and peak["threads"] >= 1
    assert tables["digits"] == [] and len(tables["load_average"]["workloads"]) == 2
    assert len(doc["load_average"]["before"]) == len(doc["load_average"]["after"]) == 3
    machine = doc["machine"]
    assert machine["cpu"]["model"] and machine["cpu"]["count"] >= 1
    assert machine["backprop"]["cpu"]["target"].startswith(_core.TARGET)
    assert machine["backprop"]["threads"]["two-core paths"] >= 1
    assert machine["versions"]["numpy"] and machine["versions"]["python"]
    if importlib.util.find_spec("threadpoolctl") is not None:
        blas = [pool for pool in machine["thread_pools"] if pool["user_api"] == "blas"]
        assert blas and all("internal_api" in pool and "num_threads" in pool for pool in blas)
    assert doc["contention"] is None


def test_unmeasured_figures_are_null_and_digits_rows_kept(tmp_path):
    sgd = bench.DIGITS["sgd"]
    tables = bench.Tables(repeats=1, scale=1.0)
    tables.digits = [
        bench.DigitsRow(sgd, "backprop", [0.1], [0.2], 0.9, 200, 0.4, 6.0),
        bench.DigitsRow(sgd, "sklearn", [0.6], [1.1], 0.9, 200, 0.4, 1.0),
    ]
    w1 = bench.WORKLOADS["W1"]
    tables.rows = [bench.Row(w1, "backprop", [0.002])]  # no peer: its ratio is NaN
    path = tmp_path / "run.json"
    record.write(path, record.document(["--workloads", "W1,digits"], _now(), (0.0, 0.0, 0.0),
                                       tables))  # fmt: skip
    doc = json.loads(path.read_text())
    assert doc["tables"]["workloads"][0]["ratio_to_fastest_peer"] is None
    assert doc["tables"]["ratios"] == {"digits sgd": {"sklearn": pytest.approx(6.0)}}
    digits = doc["tables"]["digits"]
    assert [row["library"] for row in digits] == ["backprop", "sklearn"]
    assert digits[0]["solver"] == "sgd" and digits[0]["cpu_seconds"] == [0.2]
    assert not list(tmp_path.glob(".*partial"))  # written whole, then renamed


def _now():
    import datetime

    return datetime.datetime.now(datetime.timezone.utc)


@needs_matplotlib
def test_plot_draws_a_png_of_the_ratios(tmp_path):
    ratios = {"W1 tiny-online": {"numpy": 200.0, "jax": 9.0}, "W4 wide": {"torch": 0.98},
              "digits sgd": {"sklearn": 5.5, "numpy": math.nan}}  # fmt: skip
    path = tmp_path / "ratios.png"
    bench.plot_ratios(ratios, path, title="a title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "empty.png"
    bench.plot_ratios({}, empty)
    assert empty.stat().st_size > 0


@needs_matplotlib
def test_plot_option_draws_the_figure_of_the_run(tmp_path, capsys, without_peers):
    path = tmp_path / "run.png"
    assert bench.main([*TINY, "--plot", str(path)]) == 0
    assert f"figure drawn in {path}" in capsys.readouterr().out
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_plot_without_matplotlib_is_refused_before_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as exc:
        bench.main([*TINY, "--plot", str(tmp_path / "run.png")])
    captured = capsys.readouterr()
    assert exc.value.code == 2 and captured.out == ""
    assert captured.err.splitlines()[-1] == (
        "backprop bench: error: argument --plot: needs matplotlib, which is not installed: "
        'pip install "backprop[plot]"'
    )


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_an_output_in_a_missing_directory_is_refused_before_the_run(option, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main([*TINY, option, str(tmp_path / "missing" / "out")])
    captured = capsys.readouterr()
    assert exc.value.code == 2 and captured.out == ""
    assert f"argument {option}: expected a file in an existing directory" in captured.err
