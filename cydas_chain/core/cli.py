"""What every command-line tool shares: one clear line and a non-zero exit for bad input."""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Callable

from .errors import CydasError

# timm decorates a few helpers with torch.jit.script at import; torch 2.14 warns about each use.
# Harmless for us and noise on every tool's stderr, so the tools (only) hide that one message.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)

EXIT_USER_ERROR = 2


class ToolParser(argparse.ArgumentParser):
    """argparse's parser with its errors as every tool's other errors: one ``error: ...`` line (and where
    to look) instead of the usage block, exit 2.  ``description`` is the module docstring, kept as written."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def run_tool(main: Callable[[], int | None]) -> None:
    """Run ``main``; a :class:`CydasError` (or a missing file) becomes ``error: <message>`` + exit 2."""
    try:
        code = main()
    except CydasError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except FileNotFoundError as e:
        print(f"error: {e.strerror or e}: {e.filename}" if e.filename else f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
