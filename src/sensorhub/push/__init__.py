"""Data that flows out: the outbox of ingested points (events), rules, connectors and their delivery.

Kept empty on purpose: ``timeseries.ingest`` imports :mod:`sensorhub.push.events` (the outbox is written
in the ingest transaction), and importing this package must not pull anything else in.
"""
