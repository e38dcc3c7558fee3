"""The seed API families, each a thin adapter over the shared services.

- :mod:`.ngsi_ld` — ETSI NGSI-LD entities (``/ngsi-ld/v1/…``), errors as ProblemDetails;
- :mod:`.akenza` — Akenza assets (``/v3/assets``, Spring pages) and device backfill;
- :mod:`.leaf` — LEAF data rows (``/api/data``, ``/api/data/recent``) and grants (``/api/managements``);
- :mod:`.datacake` — Datacake's GraphQL API (``/graphql``), errors in the GraphQL shape.

A family is a package with ``routes.py`` (an ``APIRouter``: parse the family's parameters, call one
service, render) and ``schemas.py`` (its wire shapes). It decides nothing about tenancy (the services
take the credential's :class:`~sensorhub.authz.access.Access`), writes no SQL, and pages, links and
times through :mod:`sensorhub.kit`. Its error shape is chosen by path in :mod:`sensorhub.api.errors`.
"""
