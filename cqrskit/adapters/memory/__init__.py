"""In-memory adapters: a second implementation of each port, for unit tests and contract suites."""
