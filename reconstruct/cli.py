"""The ``nestnet`` command (kept at this path for ``python -m reconstruct.cli`` and the console script).

The command lives on the application floor, :mod:`reconstruct.app.cli`; the science modules of
:mod:`reconstruct` never import it.
"""

from __future__ import annotations

import sys

from .app.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, build_parser, main

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_INTERRUPTED"]

if __name__ == "__main__":
    sys.exit(main())
