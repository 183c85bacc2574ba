"""The ``cqrskit`` command line: thin parsing over the library's functions."""

from cqrskit.cli._main import main

__all__ = ["main"]
