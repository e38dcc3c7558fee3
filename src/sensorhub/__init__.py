"""sensorhub: a self-hostable, multi-tenant sensor-data platform with scoped, revocable access tokens."""

__version__ = "0.1.0"
