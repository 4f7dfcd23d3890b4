"""Real services for the tests, started on loopback by the project's own code."""
