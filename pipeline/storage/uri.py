"""Names of files: the scheme of a URI, joining relative parts onto a root, S3 bucket/key splitting, and
the redacted form of a URI that is safe to log or store.

A URI may carry credentials: userinfo (`https://user:password@host/...`) or a presigned URL's query
(`?X-Amz-Credential=...&X-Amz-Signature=...`). Reads use the URI as given; everything that is printed
or written down (documents' file_path, stats, run records, messages) goes through `redact` first.
"""

from __future__ import annotations

import os
import re
import urllib.request
from urllib.parse import unquote, unquote_plus, urlparse

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# scheme://, authority (userinfo@host:port), then path, query and fragment
_URI_PARTS = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)([^?#]*)(?:\?([^#]*))?(#.*)?$", re.DOTALL)
_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")

# Query parameters that carry credentials, compared in lower case. A parameter is also a secret when its
# name contains one of SECRET_NAME_PARTS or ends in "key" (api_key, subscription-key, accesskey).
SECRET_PARAMETERS = frozenset(
    {
        "x-amz-credential",  # AWS Signature V4 presigned URLs
        "x-amz-signature",
        "x-amz-security-token",
        "awsaccesskeyid",  # AWS Signature V2 presigned URLs
        "signature",
        "x-goog-credential",  # Google Cloud Storage signed URLs
        "x-goog-signature",
        "sig",  # Azure shared access signatures
        "token",
        "auth",
        "key",
    }
)
SECRET_NAME_PARTS = ("token", "secret", "password", "passwd", "signature", "credential")


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


def _is_secret(parameter: str) -> bool:
    name = unquote_plus(parameter.partition("=")[0]).lower()
    return (
        name in SECRET_PARAMETERS or name.endswith("key") or any(part in name for part in SECRET_NAME_PARTS)
    )


def _without_credentials(uri: str, keep_query: bool) -> str:
    parts = _URI_PARTS.match(uri)
    if parts is None:  # a plain path
        return uri
    scheme_part, authority, path, query, fragment = parts.groups()
    rest = ""
    if keep_query:
        kept = [
            parameter for parameter in (query or "").split("&") if parameter and not _is_secret(parameter)
        ]
        rest = ("?" + "&".join(kept) if kept else "") + (fragment or "")
    return scheme_part + authority.rpartition("@")[2] + path + rest


def redact(uri: str) -> str:
    """`uri` without userinfo and without the query parameters that carry credentials (SECRET_PARAMETERS
    and names like them); the rest, other query parameters included, is kept. A plain path is returned
    as it is."""
    return _without_credentials(uri, keep_query=True)


def object_path(uri: str) -> str:
    """Where the object is, and nothing else: `uri` without userinfo, query and fragment. Documents keep
    it as their file_path, so a presigned URL's signature and expiry never enter a dataset."""
    return _without_credentials(uri, keep_query=False)


def redact_text(text: str) -> str:
    """`text` (an error message, a log line) with every URI in it redacted."""
    return _URI_IN_TEXT.sub(lambda found: redact(found.group(0)), text)


def split_userinfo(uri: str) -> tuple[str, str | None]:
    """(`uri` without userinfo, the userinfo "user:password" decoded, or None): for a client that sends
    the credentials in a header rather than in the URL."""
    parts = _URI_PARTS.match(uri)
    if parts is None or "@" not in parts.group(2):
        return uri, None
    userinfo, _, host = parts.group(2).rpartition("@")
    start, end = parts.span(2)
    return uri[:start] + host + uri[end:], unquote(userinfo)
