"""Exports: CSV and Parquet files of any permitted slice of the data, downloaded through signed,
expiring URLs (local folder served by the app, or any S3-compatible store)."""
