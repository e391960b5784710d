"""Observability: OpenTelemetry spans (:mod:`.tracing`), Prometheus metrics (:mod:`.metrics`) and JSON logs
(:mod:`.logs`). Importing this package loads none of OpenTelemetry or prometheus_client (docs/observability.md)."""
