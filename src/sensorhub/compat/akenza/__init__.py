"""Akenza: assets as Spring pages and device backfill."""
