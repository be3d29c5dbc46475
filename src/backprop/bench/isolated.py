"""Measurements in fresh Python processes, and a CPU-bound process to run beside them.

``call("module:function", kwargs, env)`` runs ``function(**kwargs)`` in a new interpreter
whose environment is this one's changed by ``env``, and returns what it returned (a value
JSON can carry). Nothing carries over from one call to the next: not the thread pools of
OpenMP or BLAS (their threads, still spinning or asleep), nor what a library imported or
decided when it loaded (a thread count read from the environment). The child imports the
same backprop as this process.

``busy_process()`` runs ``while True: pass`` in another interpreter for the length of a
``with`` block. It is killed when the block ends, however it ends; and, should this process
die without ending the block (SIGKILL), the kernel kills it too: each child asks Linux to
send it SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), first thing, and exits
if the parent is already gone. The child does this itself: a ``preexec_fn`` would run Python
between fork and exec, which can deadlock in a process with threads.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import backprop

# prctl(PR_SET_PDEATHSIG, SIGKILL), then leave if the parent (its pid is argv[1]) is gone
_DIE_WITH_PARENT = """\
import ctypes, os, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)
except (AttributeError, OSError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
"""
_SERVE = _DIE_WITH_PARENT + "from backprop.bench.isolated import _serve\n_serve(sys.argv[2])\n"
_SPIN = _DIE_WITH_PARENT + "while True: pass\n"
# A call that runs longer than this has hung: it is killed, and the error says so.
CALL_TIMEOUT = 3600.0


class ChildError(RuntimeError):
    """A call failed in its process: its exit status and the end of its stderr."""


def child_environment(env: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment with ``env`` applied (a value of None removes the
    variable), and PYTHONPATH leading to the backprop this process imported."""
    result = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    root = os.path.dirname(os.path.dirname(os.path.abspath(backprop.__file__)))
    paths = [root, *(p for p in result.get("PYTHONPATH", "").split(os.pathsep) if p)]
    result["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return result


def call(
    target: str,
    kwargs: Mapping[str, Any],
    env: Mapping[str, str | None] | None = None,
    timeout: float = CALL_TIMEOUT,
) -> Any:
    """``module.function(**kwargs)`` (``target`` = "module:function") in a fresh process with
    environment ``child_environment(env)``; its return value, through JSON. Its stdout is
    discarded; a failure raises ``ChildError`` with the end of its stderr."""
    with tempfile.TemporaryDirectory(prefix="backprop-bench-") as folder:
        request = Path(folder, "call.json")
        answer = Path(folder, "result.json")
        request.write_text(
            json.dumps({"target": target, "kwargs": dict(kwargs), "result": str(answer)})
        )
        try:
            done = subprocess.run(
                [sys.executable, "-c", _SERVE, str(os.getpid()), str(request)],
                env=child_environment(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as error:
            raise ChildError(f"{target} did not return within {timeout:g} s") from error
        if done.returncode != 0 or not answer.exists():
            tail = "\n".join(done.stderr.splitlines()[-20:])
            raise ChildError(f"{target} failed in its process (status {done.returncode}):\n{tail}")
        return json.loads(answer.read_text())


def _serve(request: str) -> None:
    """In the child: reads the call from ``request``, makes it, writes its result."""
    call = json.loads(Path(request).read_text())
    module, _, function = call["target"].partition(":")
    result = getattr(importlib.import_module(module), function)(**call["kwargs"])
    Path(call["result"]).write_text(json.dumps(result))


@contextlib.contextmanager
def busy_process() -> Iterator[subprocess.Popen]:
    """A process running ``while True: pass`` for the length of the block."""
    process = subprocess.Popen(
        [sys.executable, "-c", _SPIN, str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait()
