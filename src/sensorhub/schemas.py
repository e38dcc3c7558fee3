"""Wire-model bases shared by every domain.

Every request body model derives from :class:`StrictModel`: a field the server does not know (a typo
such as ``agregation``) is a 400 naming it, never silently dropped in favour of a default. Response
models stay lenient (plain ``BaseModel``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base of request bodies: unknown fields are refused (400 naming the field)."""

    model_config = ConfigDict(extra="forbid")
