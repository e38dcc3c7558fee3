"""File downloads in a response."""

from __future__ import annotations

from starlette.responses import Response


def csv_attachment(body: str, filename: str) -> Response:
    """``body`` as the CSV file ``filename`` for the browser to save (the audit log, the credential
    inventory)."""
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
