#!/usr/bin/env python3
"""Run the ``xvdeploy`` command from a source checkout: ``python cli.py --help``.

Installed, the same command is the ``xvdeploy`` console script.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from xvdeploy.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
