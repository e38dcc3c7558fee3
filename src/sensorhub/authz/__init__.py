"""The one place that decides which organisations, workspaces, entities and time windows a subject may
read. Every read of tenant data goes through :class:`Access`; nobody hand-writes a membership filter."""

from sensorhub.authz.access import Access, AccessRule, Window, merge_windows

__all__ = ["Access", "AccessRule", "Window", "merge_windows"]
