"""Encodings with no network: the standard OpenAI ones from rank files shipped in the repo, and
tokenizers tokenmill trained, all as `tiktoken.Encoding`.

tiktoken itself downloads rank files on first use; a cluster node, a CI runner or an air-gapped GPU box
often cannot. The four rank files in `tokenizer/ranks/` are verified copies (sha256 checked on every
load, against the hashes OpenAI publishes), so `load_encoding("cl100k_base")` gives exactly tiktoken's
ids anywhere. `gpt2` uses the r50k_base ranks, which are identical to GPT-2's encoder.json + vocab.bpe.

A trained tokenizer is a directory with `tokenizer.tiktoken` (tiktoken's rank-file format: one
`base64(token bytes) rank` line per token) and `tokenizer.json` (name, split pattern, special tokens,
the rank file's sha256). `load_encoding(PATH)` takes that directory, or the `.tiktoken` file in it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import tiktoken

from tokenmill.pipeline.storage import S3Options, join, read_bytes

ENDOFTEXT = "<|endoftext|>"
RANKS_DIR = resources.files("tokenmill.tokenizer") / "ranks"  # zip-safe: works from spark-submit --py-files
RANK_FILE, CONFIG_FILE = "tokenizer.tiktoken", "tokenizer.json"

# The split patterns and special tokens are part of each encoding's definition (as tiktoken has them).
R50K_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
GPT4_PATTERN = CL100K_PATTERN  # the default split of trained tokenizers
_FIM = {"<|fim_prefix|>": 0, "<|fim_middle|>": 1, "<|fim_suffix|>": 2}


@dataclass(frozen=True)
class EncodingSpec:
    """Everything that defines an encoding; small and picklable so it can travel to Spark executors.

    `rank_file` holds the rank file's bytes for trained tokenizers only; standard encodings are read
    from the package on whichever machine builds the encoding.
    """

    name: str
    source: str  # what to pass to load_encoding() to get it back: a standard name or a path
    pattern: str
    special_tokens: dict[str, int]
    rank_file_sha256: str
    rank_file: bytes | None = field(default=None, repr=False)

    @property
    def eot_id(self) -> int:
        if ENDOFTEXT not in self.special_tokens:
            raise ValueError(f"encoding {self.name!r} has no {ENDOFTEXT} special token")
        return self.special_tokens[ENDOFTEXT]

    def describe(self) -> dict[str, object]:
        """The tokenizer block of a token manifest."""
        return {
            "name": self.name,
            "source": self.source,
            "rank_file_sha256": self.rank_file_sha256,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
        }


@dataclass(frozen=True)
class _Standard:
    rank_file: str
    sha256: str
    pattern: str
    special_tokens: dict[str, int]


_R50K = _Standard(
    "r50k_base.tiktoken",
    "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    R50K_PATTERN,
    {ENDOFTEXT: 50256},
)
STANDARD: dict[str, _Standard] = {
    "gpt2": _R50K,  # GPT-2's encoder.json + vocab.bpe give exactly these ranks
    "r50k_base": _R50K,
    "p50k_base": _Standard(
        "p50k_base.tiktoken",
        "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
        R50K_PATTERN,
        {ENDOFTEXT: 50256},
    ),
    "cl100k_base": _Standard(
        "cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        CL100K_PATTERN,
        {ENDOFTEXT: 100257, **{k: 100258 + v for k, v in _FIM.items()}, "<|endofprompt|>": 100276},
    ),
    "o200k_base": _Standard(
        "o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        O200K_PATTERN,
        {ENDOFTEXT: 199999, "<|endofprompt|>": 200018},
    ),
}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_ranks(data: bytes, source: str) -> dict[bytes, int]:
    """tiktoken's rank-file format -> {token bytes: rank}, with errors that name the line."""
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error) as exc:
            raise ValueError(f"{source}:{number}: not a 'base64-token rank' line ({exc})") from None
    check_ranks(ranks, source)
    return ranks


def check_ranks(ranks: dict[bytes, int], source: str) -> None:
    """A byte-level BPE vocabulary must hold all 256 single bytes (else some text cannot be encoded,
    and tiktoken fails deep inside) and give every token its own rank."""
    missing = [byte for byte in range(256) if bytes([byte]) not in ranks]
    if missing:
        shown = ", ".join(f"0x{byte:02x}" for byte in missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise ValueError(f"{source}: the vocabulary lacks {len(missing)} of the 256 byte tokens ({shown})")
    if len(set(ranks.values())) != len(ranks):
        raise ValueError(f"{source}: two tokens share a rank")


def standard_spec(name: str) -> EncodingSpec:
    entry = STANDARD[name]
    data = (RANKS_DIR / entry.rank_file).read_bytes()
    digest = sha256_hex(data)
    if digest != entry.sha256:
        raise ValueError(f"{entry.rank_file}: sha256 {digest} is not the published {entry.sha256}")
    return EncodingSpec(name, name, entry.pattern, dict(entry.special_tokens), digest)


def trained_spec(path: str, s3: S3Options | None = None) -> EncodingSpec:
    """A tokenizer directory (or its .tiktoken file) written by `TrainedTokenizer.save`."""
    s3 = s3 or S3Options()
    directory = path[: -len(RANK_FILE)].rstrip("/") if path.endswith(RANK_FILE) else path
    config_uri = join(directory, CONFIG_FILE)
    try:
        config = json.loads(read_bytes(config_uri, s3))
        data = read_bytes(join(directory, RANK_FILE), s3)
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: not a tokenizer directory ({exc.filename} is missing)") from None
    digest = sha256_hex(data)
    if digest != config["rank_file_sha256"]:
        raise ValueError(
            f"{path}: {RANK_FILE} has sha256 {digest}, {CONFIG_FILE} says {config['rank_file_sha256']}"
        )
    return EncodingSpec(config["name"], path, config["pattern"], config["special_tokens"], digest, data)


def load_spec(name_or_path: str, s3: S3Options | None = None) -> EncodingSpec:
    if name_or_path in STANDARD:
        return standard_spec(name_or_path)
    if "/" not in name_or_path and not Path(name_or_path).exists():
        known = ", ".join(sorted(STANDARD))
        raise ValueError(f"unknown encoding {name_or_path!r}: use one of {known} or a tokenizer directory")
    return trained_spec(name_or_path, s3)


_BUILT: dict[tuple[str, str, str], tiktoken.Encoding] = {}


def _build(spec: EncodingSpec) -> tiktoken.Encoding:
    if spec.rank_file is None:
        data = (RANKS_DIR / STANDARD[spec.source].rank_file).read_bytes()
    else:
        data = spec.rank_file
    if sha256_hex(data) != spec.rank_file_sha256:
        raise ValueError(f"{spec.name}: rank file does not match sha256 {spec.rank_file_sha256}")
    ranks = parse_ranks(data, spec.source)
    n_vocab = max([*ranks.values(), *spec.special_tokens.values()]) + 1
    return tiktoken.Encoding(
        spec.name,
        pat_str=spec.pattern,
        mergeable_ranks=ranks,
        special_tokens=spec.special_tokens,
        explicit_n_vocab=n_vocab if len(ranks) + len(spec.special_tokens) == n_vocab else None,
    )


def encoding_for(spec: EncodingSpec) -> tiktoken.Encoding:
    """The spec's encoding, built once per process (parsing o200k's ranks takes a second)."""
    key = (spec.name, spec.rank_file_sha256, spec.pattern)
    if key not in _BUILT:
        _BUILT[key] = _build(spec)
    return _BUILT[key]


def load_encoding(name_or_path: str, s3: S3Options | None = None) -> tiktoken.Encoding:
    """`gpt2`, `r50k_base`, `p50k_base`, `cl100k_base`, `o200k_base`, or a trained tokenizer's path."""
    return encoding_for(load_spec(name_or_path, s3))
