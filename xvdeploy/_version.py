"""The package version (its own module, so that library modules need not import the facade)."""
__version__ = "0.1.0"
