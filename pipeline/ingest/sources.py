"""Which files a run reads, and the stable name of each file's unit of work.

An input may be a local file, directory or glob, an s3:// object, prefix or glob, an http(s):// URL,
or a Common Crawl manifest (`*.paths` / `*.paths.gz`). A manifest lists one key per line, relative to
the Common Crawl bucket. Everything expands on the driver to a flat, de-duplicated list of files. An
input that matches nothing is an error, because a typo must not become an empty run that reports
success.
"""

from __future__ import annotations

import fnmatch
import glob
import gzip
import hashlib
import os
import re
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import (
    S3Options,
    exists,
    join,
    list_files,
    list_infos,
    local_path,
    read_bytes,
    split_s3,
)
from tokenmill.pipeline.storage.uri import redact

_GLOB_CHARS = "*?["
_MANIFEST_SUFFIXES = (".paths", ".paths.gz")
_ARCHIVE_EXTENSIONS = (".gz", ".warc", ".wet", ".wat", ".arc")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 120


class InputError(UserError):
    """An input names nothing readable: a missing file, an empty directory, a glob without matches."""


def _has_glob(text: str) -> bool:
    return any(char in text for char in _GLOB_CHARS)


def _is_absolute(line: str) -> bool:
    return "://" in line or line.startswith("/")


def _read_manifest(uri: str, options: S3Options, cc_base: str) -> list[str]:
    if not exists(uri, options):
        raise InputError(f"manifest not found: {redact(uri)}")
    data = read_bytes(uri, options)
    if uri.endswith(".gz"):
        data = gzip.decompress(data)
    lines = [line.strip() for line in data.decode("utf-8").splitlines()]
    found = [line if _is_absolute(line) else join(cc_base, line) for line in lines if line]
    if not found:
        raise InputError(f"manifest lists no files: {redact(uri)}")
    return found


def _expand_s3(uri: str, options: S3Options) -> list[str]:
    bucket, key = split_s3(uri)
    if _has_glob(key):
        literal = re.split(r"[*?\[]", key, maxsplit=1)[0]
        listed = list_files(f"s3://{bucket}/{literal}", options)
        found = [match for match in listed if fnmatch.fnmatchcase(split_s3(match)[1], key)]
        if not found:
            raise InputError(f"no S3 object matches {uri}")
        return found
    if key and not key.endswith("/") and exists(uri, options):
        return [uri]
    directory = f"s3://{bucket}/{key.rstrip('/')}/" if key.strip("/") else f"s3://{bucket}/"
    found = list_files(directory, options)
    if not found:
        raise InputError(f"no S3 object at or under {uri}")
    return found


def _expand_local(path: str, options: S3Options) -> list[str]:
    if _has_glob(path):
        matches = sorted(glob.glob(path, recursive=True))
        found = [
            file
            for match in matches
            for file in (list_files(match, options) if os.path.isdir(match) else [match])
        ]
        if not found:
            raise InputError(f"no file matches {path}")
        return [os.path.abspath(file) for file in found]
    if os.path.isdir(path):
        found = list_files(path, options)
        if not found:
            raise InputError(f"directory has no files: {path}")
        return [os.path.abspath(file) for file in found]
    if not os.path.isfile(path):
        raise InputError(f"input not found: {path}")
    return [os.path.abspath(path)]


def expand_inputs(inputs: list[str], options: S3Options, cc_base: str = "s3://commoncrawl/") -> list[str]:
    """The files the inputs name, in order, each once.

    Local paths come back absolute, because executors do not share the driver's working directory and
    unit names must not depend on it. Manifest lines that are absolute URIs or paths are kept as they
    are. Relative lines are joined onto `cc_base`. Manifest entries are not checked for existence;
    listing millions of keys up front would cost more than finding one missing file in its task.
    """
    found: list[str] = []
    for item in inputs:
        if item.endswith(_MANIFEST_SUFFIXES) and not _has_glob(item):
            found += _read_manifest(item, options, cc_base)
        elif item.startswith(("http://", "https://")):
            found.append(item)
        elif item.startswith("s3://"):
            found += _expand_s3(item, options)
        else:
            found += _expand_local(local_path(item) or item, options)
    return list(dict.fromkeys(found))


def input_versions(uris: list[str], options: S3Options) -> dict[str, str | None]:
    """The version of each input's content, so that a rewritten input file is processed again: size and
    mtime for a local file; size and ETag for an S3 object, from one listing per folder (a Common
    Crawl manifest's ~90,000 WARCs sit in ~100 segment folders: ~100 requests, not 90,000); None where
    the store cannot list (http(s)://, or a bucket that forbids listing), and the URI alone identifies
    the input then (Common Crawl's files never change)."""
    versions: dict[str, str | None] = dict.fromkeys(uris)
    folders: dict[str, list[str]] = {}
    for uri in uris:
        path = local_path(uri)
        if path is not None and os.path.isfile(path):  # a missing file fails its unit, with its error
            found = os.stat(path)
            versions[uri] = f"{found.st_size}:{found.st_mtime_ns}"
        elif uri.startswith("s3://"):
            folders.setdefault(uri.rsplit("/", 1)[0] + "/", []).append(uri)
    for folder, members in folders.items():
        try:
            listed = {info.uri: f"{info.size}:{info.version}" for info in list_infos(folder, options)}
        except ClientError:
            continue  # no permission to list: the URI alone identifies these inputs
        versions.update({uri: listed.get(uri) for uri in members})
    return versions


def unit_name(uri: str) -> str:
    """A stable, filesystem- and S3-safe name for the unit of work that reads `uri`.

    The name is the file's base name without archive extensions, plus 8 hex digits of sha1(uri), so
    files with the same base name in different places never collide. Leading "." and "_" are removed,
    because Spark and pyarrow skip files whose names start with them.
    """
    path = urlparse(uri).path if uri.startswith(("http://", "https://")) else uri
    stem = path.rstrip("/").rsplit("/", 1)[-1]
    while stem.lower().endswith(_ARCHIVE_EXTENSIONS):
        stem = stem.rsplit(".", 1)[0]
    stem = _UNSAFE.sub("_", stem).lstrip("._")[:_MAX_STEM] or "input"
    return f"{stem}-{hashlib.sha1(uri.encode('utf-8')).hexdigest()[:8]}"
