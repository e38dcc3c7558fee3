"""Time series: series, measurements, rollups, reads, ingest, telemetry."""
