"""``python -m cqrskit``: the ``cqrskit`` command line."""

from cqrskit.cli._main import main

main()
