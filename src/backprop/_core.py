"""The compiled kernels (``_kernels/_core.pyx``; signatures in ``_core.pyi``), built once
per CPU target: this module re-exports the one chosen at import for this CPU, or the one
``BACKPROP_CPU`` names (``_cpu.choose``), so every other module imports ``_core`` alone.

The classes the kernels define say they come from here, not from the target's module, so
that a pickle (an optimizer's ``Rule``, say) loads on a machine that runs another target.
"""

import importlib
import sys

from . import _cpu

try:
    #: The CPU target of the kernels in use (a key of ``_cpu.TARGETS``).
    TARGET = _cpu.choose()
except ImportError as error:
    if error.name != _cpu.CORE or not _cpu.run_as_command():
        raise
    # python -m backprop: the package cannot import, so say why as the command line would
    print(f"python -m backprop: error: {error}", file=sys.stderr)
    raise SystemExit(2) from None
_module = importlib.import_module(f"{__package__}.{_cpu.TARGETS[TARGET][0]}")

for _name, _value in vars(_module).items():
    if _name.startswith("__"):
        continue
    if isinstance(_value, type) and _value.__module__ == _module.__name__:
        try:
            _value.__module__ = __name__
        except TypeError:  # an extension type's is fixed; none of them is pickled
            pass
    globals()[_name] = _value

del _name, _value
