"""Where export files live: a folder in the data dir, or any S3-compatible store. Either way the
download URL is this server's signed URL: the route checks the credential behind the export, then
sends the file (local) or redirects to a presigned URL that lives one minute (S3).

Files are first written to a local staging path (bounded memory, whatever the size), then published:
renamed into place locally, or uploaded with boto3's managed (multipart) transfer.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

from sensorhub.config import Settings
from sensorhub.export import signing

SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# SigV4 presigned URLs cannot live longer than 7 days.
S3_MAX_EXPIRY = 7 * 86400


@dataclass(frozen=True)
class StoredFile:
    export_id: str
    key: str
    filename: str
    content_type: str
    expires_at: datetime


class ExportStore(Protocol):
    kind: str

    def staging_path(self, key: str) -> Path: ...

    def publish(self, staging: Path, f: StoredFile) -> int: ...

    def delete(self, key: str) -> None: ...

    def download_url(self, f: StoredFile, base_url: str, now: datetime) -> str: ...


def signed_download_url(secret: str, f: StoredFile, base_url: str) -> str:
    """``GET /api/datahub/exports/{id}/download?expires=…&signature=…`` on this server, valid until the
    export expires. The route checks the signature *and* the credential behind the export."""
    expires = int(f.expires_at.timestamp())
    q = urlencode({"expires": str(expires), "signature": signing.sign(secret, f.export_id, expires)})
    return f"{base_url.rstrip('/')}/api/datahub/exports/{f.export_id}/download?{q}"


class LocalStore:
    """``<root>/<export id>.<ext>``; downloads go through ``GET /api/datahub/exports/{id}/download``."""

    kind = "local"

    def __init__(self, root: Path, secret: str) -> None:
        self.root = root
        self._secret = secret

    def _ensure(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def path(self, key: str) -> Path:
        if not SAFE_KEY.match(key):
            raise ValueError(f"unsafe export key {key!r}")
        return self.root / key

    def staging_path(self, key: str) -> Path:
        return self._ensure() / f".{key}.part"

    def publish(self, staging: Path, f: StoredFile) -> int:
        final = self.path(f.key)
        os.replace(staging, final)
        return final.stat().st_size

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()

    def download_url(self, f: StoredFile, base_url: str, now: datetime) -> str:
        return signed_download_url(self._secret, f, base_url)

    def sweep_staging(self, older_than_seconds: float) -> int:
        """Remove partial files left by a crash."""
        if not self.root.exists():
            return 0
        n = 0
        limit = time.time() - older_than_seconds
        for p in self.root.glob(".*.part"):
            with contextlib.suppress(FileNotFoundError):
                if p.stat().st_mtime < limit:
                    p.unlink()
                    n += 1
        return n


class S3Store:
    """``s3://bucket/prefix`` on AWS or any S3-compatible server (``SENSORHUB_S3_ENDPOINT_URL``).
    Credentials come from the usual AWS environment (variables, profile, instance role)."""

    kind = "s3"

    def __init__(self, url: str, endpoint_url: str | None, staging_root: Path, secret: str) -> None:
        rest = url[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ValueError("SENSORHUB_EXPORT_STORE must look like s3://bucket or s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.staging_root = staging_root
        self._secret = secret
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
            cfg = Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            )
            self._client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name=region, config=cfg)
        return self._client

    def object_key(self, key: str) -> str:
        return self.prefix + key

    def staging_path(self, key: str) -> Path:
        self.staging_root.mkdir(parents=True, exist_ok=True)
        return self.staging_root / f".{key}.part"

    def publish(self, staging: Path, f: StoredFile) -> int:
        size = staging.stat().st_size
        try:
            self.client.upload_file(
                str(staging),
                self.bucket,
                self.object_key(f.key),
                ExtraArgs={
                    "ContentType": f.content_type,
                    "ContentDisposition": f'attachment; filename="{f.filename}"',
                },
            )
        finally:
            with contextlib.suppress(FileNotFoundError):
                staging.unlink()
        return size

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def download_url(self, f: StoredFile, base_url: str, now: datetime) -> str:
        """Our own signed URL, not a presigned one: S3 cannot revoke a presigned URL, so the download
        route checks the credential first and then redirects to :meth:`presigned_url`."""
        return signed_download_url(self._secret, f, base_url)

    def presigned_url(self, f: StoredFile, seconds: int, method: str = "GET") -> str:
        """A SigV4 presigned URL for ``GET`` (or ``HEAD``) of the object, valid ``seconds``."""
        url: str = self.client.generate_presigned_url(
            "head_object" if method == "HEAD" else "get_object",
            Params={"Bucket": self.bucket, "Key": self.object_key(f.key)},
            ExpiresIn=max(1, min(S3_MAX_EXPIRY, seconds)),
        )
        return url


def store_from_settings(settings: Settings) -> LocalStore | S3Store:
    """``export_store`` unset → ``<data dir>/exports``; ``s3://…`` → S3; anything else → that folder."""
    spec = (settings.export_store or "").strip()
    local_root = settings.data_dir / "exports"
    if spec.startswith("s3://"):
        return S3Store(spec, settings.s3_endpoint_url, local_root / ".staging", settings.resolved_secret_key)
    if spec:
        local_root = Path(spec[len("file://") :] if spec.startswith("file://") else spec)
    return LocalStore(local_root, settings.resolved_secret_key)
