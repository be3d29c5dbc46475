"""``backprop bench --contention`` (``backprop.bench.contention``) and the fresh processes it
runs in (``backprop.bench.isolated``): a tiny run prints a table per scenario with a row per
condition, each measured in its own process, and records them; the CPU-bound process of the
busy scenario is gone after it, and after its parent is killed; what cannot run says why."""

import contextlib
import datetime
import io
import os
import subprocess
import sys
import time

import pytest
from conftest import child_env

from backprop import bench
from backprop.bench import contention, isolated, record


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie not yet reaped counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_a_tiny_run_has_a_table_per_scenario_and_kills_the_busy_process(monkeypatch):
    started = []

    @contextlib.contextmanager
    def recorded_busy_process():
        with isolated.busy_process() as process:
            started.append(process)
            yield process

    monkeypatch.setattr(contention, "busy_process", recorded_busy_process)
    out = io.StringIO()
    result = bench.run_contention(
        repeats=1,
        scale=0.002,
        progress=False,
        file=out,
        scenarios=("quiet", "busy"),
        workloads=("W3",),
        conditions=("backprop",),  # a process each: the other conditions only change its env
    )
    table = out.getvalue()
    assert "scenario quiet: nothing else running" in table and "scenario busy: a CPU" in table
    assert [(r.scenario, r.condition) for r in result.rows] == [
        ("quiet", "backprop"),
        ("busy", "backprop"),
    ]
    for row in result.rows:
        assert len(row.seconds) == 1 and row.median > 0 and row.threads in (1, 2)
        assert row.vs_quiet > 0 and row.vs_backprop == 1
        assert row.env == {contention.THREADS_VARIABLE: None}  # removed: the default threads
    assert sum(line.startswith("W3 mnist-size") for line in table.splitlines()) == 2
    (process,) = started
    assert process.poll() is not None  # killed when the scenario ended
    doc = record.document(["--contention"], datetime.datetime.now(), os.getloadavg(), None, result)
    rows = doc["contention"]["rows"]
    assert [row["scenario"] for row in rows] == ["quiet", "busy"]
    assert rows[0]["median"] == rows[0]["seconds"][0] and "busy" in doc["contention"]["scenarios"]


def test_the_busy_process_dies_with_its_parent():
    code = (
        "import os, signal\n"
        "from backprop.bench.isolated import busy_process\n"
        "process = busy_process().__enter__()\n"
        "print(process.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    parent = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=60
    )
    pid = int(parent.stdout)
    deadline = time.monotonic() + 10
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(pid)


def test_the_busy_process_is_killed_when_the_block_fails():
    with pytest.raises(KeyError), isolated.busy_process() as process:
        assert process.poll() is None
        raise KeyError("any error")
    assert process.poll() is not None


def test_measure_runs_a_scenario_in_this_process():
    got = contention.measure("numpy", "digits", "sklearn", repeats=2, scale=0.01)
    assert len(got["seconds"]) == 2 and all(s > 0 for s in got["seconds"])
    assert got["threads"] in (1, 2) and got["thread limit"] >= 1


def test_a_call_runs_in_a_fresh_process_in_its_conditions_environment(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv(contention.THREADS_VARIABLE, "2")
    _, one_thread = contention.CONDITIONS["W3"]["backprop 1 thread"]
    seen = isolated.call(f"{isolated.__name__}:child_environment", {}, one_thread)
    assert seen[contention.THREADS_VARIABLE] == "1" and seen["OMP_NUM_THREADS"] == "2"
    _, default = contention.CONDITIONS["W3"]["backprop"]
    assert contention.THREADS_VARIABLE not in isolated.child_environment(default)
    with pytest.raises(isolated.ChildError, match="status 1"):
        isolated.call("os:no_such_function", {})


def test_what_cannot_run_is_skipped_with_a_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    skips = contention.contention_skips(tuple(contention.SCENARIOS), ("W3",), None)
    assert skips == {"torch": "PyTorch is not installed", "W3 torch": "PyTorch is not installed"}
    out = io.StringIO()
    result = bench.run_contention(
        repeats=1, progress=False, file=out, scenarios=("torch",), workloads=("W3",)
    )
    assert result.rows == [] and "scenario torch: skipped, PyTorch is not installed" in (
        out.getvalue()
    )


@pytest.mark.parametrize("option", [["--workloads", "W1"], ["--plot", "x.png"], ["--dask"]])
def test_contention_refuses_the_options_of_the_tables(option, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--contention", *option])
    assert exc.value.code == 2
    assert "argument --" in capsys.readouterr().err
