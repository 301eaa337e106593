"""twinflow tests (a package so that tests/reliability can share helpers)."""
