"""The CPU targets this CPU runs, read from the feature flags Linux lists."""

import pytest

from backprop import _cpu

V2 = frozenset(_cpu.LEVEL_FLAGS["x86-64-v2"])
V3 = V2 | frozenset(_cpu.LEVEL_FLAGS["x86-64-v3"])
V4 = V3 | frozenset(_cpu.LEVEL_FLAGS["x86-64-v4"])

x86_only = pytest.mark.skipif(not _cpu.is_x86(), reason="x86-64 targets")


@x86_only
@pytest.mark.parametrize(
    "flags, expected",
    [
        (V2, ["x86-64-v2"]),
        (V3, ["x86-64-v2", "x86-64-v3"]),
        (V4, ["x86-64-v2", "x86-64-v3", "x86-64-v4"]),
        (V4 - {"avx2"}, ["x86-64-v2"]),  # a level needs every level below it
        (V3 - {"sse4_2"}, []),
    ],
)
def test_supported_targets_follow_the_flags(flags, expected):
    assert _cpu.supported(flags) == expected


@x86_only
def test_without_cpuinfo_only_the_baseline(monkeypatch):
    monkeypatch.setattr(_cpu, "cpu_flags", lambda: None)
    assert _cpu.supported() == ["x86-64-v2"]


@x86_only
def test_missing_flags_name_what_a_target_lacks():
    assert _cpu.missing_flags("x86-64-v4", V3 - {"fma"}) == [
        "fma", "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"
    ]  # fmt: skip


def test_flags_are_those_of_the_first_processor(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert _cpu.cpu_flags(str(cpuinfo)) == {"fpu", "sse2", "avx2"}
    assert _cpu.cpu_flags(str(tmp_path / "absent")) is None


def test_this_cpu_runs_the_baseline():
    assert _cpu.supported()[:1] == [_cpu.platform_targets()[0]]
