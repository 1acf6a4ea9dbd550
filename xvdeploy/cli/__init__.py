"""The xvdeploy command line (one module per command)."""
from xvdeploy.cli.main import main

__all__ = ["main"]
