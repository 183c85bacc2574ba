"""The public API is curated: sorted, complete and documented."""

import inspect

import cqrskit


def test_all_is_unique() -> None:
    # Its order is ruff's (RUF022: constants, classes, then functions, each sorted).
    assert len(cqrskit.__all__) == len(set(cqrskit.__all__))


def test_every_public_name_is_exported() -> None:
    public = {name for name in vars(cqrskit) if not name.startswith("_")}
    modules = {name for name, value in vars(cqrskit).items() if inspect.ismodule(value)}
    assert public - modules == set(cqrskit.__all__) - {"__version__"}


def test_every_export_has_a_docstring() -> None:
    for name in cqrskit.__all__:
        obj = getattr(cqrskit, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"cqrskit.{name} has no docstring"
