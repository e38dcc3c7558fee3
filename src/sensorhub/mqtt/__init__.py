"""MQTT ingest and live values through a real broker, authenticated by sensorhub tokens (docs/mqtt.md)."""
