"""The fault suite: ``make chaos`` (full) and a short form run by ``make test``."""
