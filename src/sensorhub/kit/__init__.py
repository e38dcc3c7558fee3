"""What every API family needs, in one place: cursors and page-size policy (:mod:`.paging`), absolute
URLs from the settings (:mod:`.urls`), time parsing and formatting (:mod:`.time`).

The kit imports nothing of sensorhub's domains: domain services and the seed-family adapters
(:mod:`sensorhub.compat`) build on it, so a fix to paging or links lands in every family at once.
"""
