"""Package tokenmill for spark-submit: the Python environment as one archive, the code as one zip.

    python infra/pack.py [--out build]   ->  build/tokenmill-env.tar.gz, build/tokenmill-code.zip

* `tokenmill-env.tar.gz` (`--archives build/tokenmill-env.tar.gz#environment`): a virtual environment
  holding exactly the closure of tokenmill's runtime requirements as installed here (trafilatura,
  lid.176 in tokenmill's code zip, tiktoken, pyarrow, ...), minus pyspark and py4j, which every Spark node
  has in its own install. Executors run `./environment/bin/python`. Like Spark's documented venv-pack
  recipe, the archive does not carry the interpreter: `bin/python` points at this machine's base Python
  (recorded in `pyvenv.cfg`), so nodes need the same Python at the same path (true of a cluster built
  from one image; the Dockerfile in infra/ is the fully self-contained route).
* `tokenmill-code.zip` (`--py-files`): the packages `jobs`, `pipeline`, `tokenizer` as `tokenmill.*`,
  with their data files, so new code ships without rebuilding the environment. The code reads its data through
  importlib.resources, which works inside a zip.

Both are written deterministically (sorted entries, fixed timestamps) and atomically.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
CODE_PACKAGES = ("jobs", "pipeline", "tokenizer")
ON_EVERY_SPARK_NODE = {"pyspark", "py4j"}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def runtime_closure(root: str = "tokenmill") -> list[metadata.Distribution]:
    """The installed distributions tokenmill needs at run time (no extras of its own), transitively."""
    seen: dict[str, metadata.Distribution] = {}
    visited: set[tuple[str, frozenset[str]]] = set()
    pending: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    while pending:
        name, extras = pending.pop()
        if (name, extras) in visited:
            continue
        visited.add((name, extras))
        dist = metadata.distribution(name)
        seen[canonicalize_name(dist.metadata["Name"])] = dist
        environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker and not any(requirement.marker.evaluate(env) for env in environments):
                continue
            child = canonicalize_name(requirement.name)
            if child not in ON_EVERY_SPARK_NODE:
                pending.append((child, frozenset(requirement.extras)))
    seen.pop(canonicalize_name(root))
    return sorted(seen.values(), key=lambda dist: canonicalize_name(dist.metadata["Name"]))


def _tar_file(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    archive.addfile(info, io.BytesIO(data))


def _tar_link(archive: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, 0
    archive.addfile(info)


def pack_environment(out: Path) -> tuple[Path, int]:
    """Write the environment archive; returns its path and the number of distributions in it."""
    dists = runtime_closure()
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys._base_executable).resolve()
    site = f"lib/{version}/site-packages"
    temp = out.with_name(f".{out.name}.tmp")
    with (
        open(temp, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        home = base.parent
        config = f"home = {home}\ninclude-system-site-packages = false\nversion = {sys.version.split()[0]}\n"
        _tar_file(archive, "pyvenv.cfg", config.encode())
        for name in ("python", "python3", version):
            _tar_link(archive, f"bin/{name}", str(base))
        files = set()
        for dist in dists:
            for entry in dist.files or []:
                path = Path(dist.locate_file(entry))
                relative = entry.as_posix()
                if relative.startswith("..") or "__pycache__" in relative or not path.is_file():
                    continue  # scripts outside site-packages, bytecode caches, RECORD-listed strays
                files.add((relative, path))
        for relative, path in sorted(files):
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            _tar_file(archive, f"{site}/{relative}", path.read_bytes(), mode)
    os.replace(temp, out)
    return out, len(dists)


def pack_code(out: Path) -> Path:
    """Write the code zip: every file of the code packages except bytecode caches."""
    temp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        # zipimport finds regular packages only: the installed `tokenmill` is a namespace (package-dir)
        archive.writestr(zipfile.ZipInfo("tokenmill/__init__.py", FIXED_TIME), b"")
        for package in CODE_PACKAGES:
            for path in sorted((REPO / package).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    info = zipfile.ZipInfo(f"tokenmill/{path.relative_to(REPO).as_posix()}", FIXED_TIME)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, path.read_bytes())
    os.replace(temp, out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "build", help="output directory (default build/)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env, count = pack_environment(args.out / "tokenmill-env.tar.gz")
    code = pack_code(args.out / "tokenmill-code.zip")
    print(f"pack: {env} ({count} distributions, {env.stat().st_size / 1e6:,.0f} MB)")
    interpreter = Path(sys._base_executable).resolve()
    print(f"pack: {code} ({code.stat().st_size / 1e6:,.1f} MB); every node needs {interpreter}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
