"""Finding the user's application class from a ``module:Class`` string."""

from __future__ import annotations

import importlib
import os
import sys

from cqrskit.errors import ConfigurationError
from cqrskit.eventstore import Application

__all__ = ["load_application_class"]


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
