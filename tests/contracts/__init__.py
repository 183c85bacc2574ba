"""Contract suites: each port's behaviour, run against every implementation."""
