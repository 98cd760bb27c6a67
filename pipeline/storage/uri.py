"""Names of files: the scheme of a URI, joining relative parts onto a root, S3 bucket/key splitting."""

from __future__ import annotations

import os
import re
import urllib.request
from urllib.parse import urlparse

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme(uri: str) -> str:
    """'s3', 'http', 'file', ...: the URI's scheme in lower case; a plain path is 'file'."""
    match = _SCHEME.match(uri)
    return match.group(1).lower() if match else "file"


def split_s3(uri: str) -> tuple[str, str]:
    """'s3://bucket/some/key' -> ('bucket', 'some/key')."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def local_path(uri: str) -> str | None:
    """The filesystem path of a local path or file:// URI, or None for a remote URI."""
    if uri.startswith("file://"):
        return urllib.request.url2pathname(urlparse(uri).path)
    return uri if scheme(uri) == "file" else None


def join(root: str, *parts: str) -> str:
    """Join path parts onto a local or remote root. Parts are always relative, even with a leading '/'."""
    parts = tuple(part.strip("/") for part in parts if part.strip("/"))
    if _SCHEME.match(root):
        return "/".join([root.rstrip("/"), *parts])
    return os.path.join(root, *parts)


def directory_prefix(uri: str) -> str:
    """`uri` as a directory: local paths as paths, and a trailing '/', so that listing
    's3://b/out/documents' does not also match 's3://b/out/documents-old/...'."""
    return (local_path(uri) or uri).rstrip("/") + "/"
