"""The one place that decides which organisations, workspaces, entities and time windows a subject may
read. Every read of tenant data goes through :class:`Access` and reaches rows only through
:func:`visible_entities` (the SQL filter) and :func:`readable_windows_us` (the time windows); nobody
hand-writes a membership or organisation filter (``sensorhub.lint.tenancy`` checks, in ``make lint``)."""

# Only the pure rules here: pure modules import them (entities/windows.py), so importing the package
# must not load the ORM models that sensorhub.authz.scope and .entities need.
from sensorhub.authz.access import Access, AccessRule, Window, merge_windows

__all__ = ["Access", "AccessRule", "Window", "merge_windows"]
