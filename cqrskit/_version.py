#: The version of cqrskit.
__version__ = "0.1.0"
