"""Shared set-up of the spec tests (tests/spec/): they run the Markdown of specs/.

The helper modules (``specparse``, ``spec_tables``, ``spec_runner``) sit next to the
tests rather than in a package, so they import the same way under pytest's default
``prepend`` import mode and under ``importlib`` (which does not put test directories on
``sys.path``): this file puts the directory there once, before any test module loads.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
