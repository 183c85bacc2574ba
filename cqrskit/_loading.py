"""Finding the user's application class from a ``module:Class`` string."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from typing import Any, TypeVar

from cqrskit.errors import ConfigurationError
from cqrskit.eventstore import Application
from cqrskit.projections import Projection
from cqrskit.sagas import ProcessManager

T = TypeVar("T")

__all__ = ["load_application_class", "load_projections", "load_sagas"]


def load_application_class(spec: str | None, variable: str = "CQRSKIT_APP") -> type[Application]:
    """Import ``module:Class`` and check it is a cqrskit Application.

    The current directory is importable, as it is for ``python -m``.

    Raises:
        ConfigurationError: no spec, a module that does not import, or a name
            that is not an Application subclass.
    """
    if not spec:
        raise ConfigurationError(variable, spec, "name the application as module:Class (--app)")
    module_name, _, class_name = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(variable, spec, f"cannot import {module_name}: {exc}") from exc
    found = getattr(module, class_name, None)
    if not (isinstance(found, type) and issubclass(found, Application)):
        raise ConfigurationError(
            variable, spec, f"{module_name} has no cqrskit Application named {class_name}"
        )
    return found


def load_projections(
    module_name: str | None, variable: str = "CQRSKIT_PROJECTIONS"
) -> dict[str, type[Projection[Any]]]:
    """Every Projection subclass with a name defined in a module or package.

    Raises:
        ConfigurationError: no module named, it does not import, it defines no
            projection, or two projections share a name.
    """
    return _named_subclasses(module_name, Projection, "projections", variable)


def load_sagas(
    module_name: str | None, variable: str = "CQRSKIT_SAGAS"
) -> dict[str, type[ProcessManager[Any]]]:
    """Every ProcessManager subclass with a name defined in a module or package.

    Raises:
        ConfigurationError: as :func:`load_projections`.
    """
    return _named_subclasses(module_name, ProcessManager, "sagas", variable)


def _named_subclasses(
    module_name: str | None, base: type[T], kind: str, variable: str
) -> dict[str, type[T]]:
    if not module_name:
        raise ConfigurationError(variable, module_name, f"name the {kind} module (--{kind})")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        root = importlib.import_module(module_name)
        modules = [root]
        for info in pkgutil.walk_packages(getattr(root, "__path__", []), f"{module_name}."):
            modules.append(importlib.import_module(info.name))
    except ImportError as exc:
        raise ConfigurationError(variable, module_name, f"cannot import: {exc}") from exc
    found: dict[str, type[T]] = {}
    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, base)
                and value.__module__ == module.__name__
                and "name" in vars(value)
            ):
                name = str(vars(value)["name"])
                if name in found and found[name] is not value:
                    raise ConfigurationError(
                        variable, module_name, f"two {kind} are named {name!r}"
                    )
                found[name] = value
    if not found:
        raise ConfigurationError(variable, module_name, f"defines no {kind[:-1]}")
    return dict(sorted(found.items()))
