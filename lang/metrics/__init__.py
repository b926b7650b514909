"""A run's measurements (SPEC §12): the registry of metrics, thresholds, and the outputs
(summary, JSON lines, Prometheus, HTML). Below the language and beside the endpoints: it
imports neither."""
