"""`evt test` (SPEC §13): discovery, one fresh program per test, reports."""
