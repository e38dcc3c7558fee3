"""InfluxDB write API (line protocol) over the ingest service."""
