"""In-memory adapters: each port's contract without services, for tests."""
