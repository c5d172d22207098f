"""Two copies of ``ntlr`` in one process, for benchmarks that measure a change side by side with the
commit before it (``--compare-src``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_library(src: str, name: str = "ntlr_compare") -> ModuleType:
    """The ``ntlr`` package under ``src`` imported as ``name`` (its modules import each other relatively,
    so two copies of the library live side by side in one process)."""
    init = Path(src) / "ntlr" / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    if spec is None or spec.loader is None:
        raise ImportError(f"no ntlr package under {src}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
