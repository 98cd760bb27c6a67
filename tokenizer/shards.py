"""The binary token shard format that llm.c and modded-nanogpt read unchanged.

A shard is a header of 256 little-endian int32 then the tokens:

    header[0] magic    20240520 for uint16 tokens, 20240801 for uint32 tokens
    header[1] version  1 (uint16) or 7 (uint32)
    header[2] count    number of tokens that follow

The magic says the dtype, so a reader can never take uint32 tokens for uint16 ones. Beside each
`NAME.bin` lies `NAME.idx`: little-endian uint64 offsets (in tokens, from the start of the shard's
tokens) of every document that starts in the shard; each such document begins with the EOT token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4


@dataclass(frozen=True)
class ShardFormat:
    magic: int
    version: int
    dtype: np.dtype


UINT16 = ShardFormat(magic=20240520, version=1, dtype=np.dtype("<u2"))
UINT32 = ShardFormat(magic=20240801, version=7, dtype=np.dtype("<u4"))
_BY_MAGIC = {UINT16.magic: UINT16, UINT32.magic: UINT32}


def format_for_vocab(vocab_size: int) -> ShardFormat:
    """uint16 when every token id fits (vocab_size <= 65,536), else uint32."""
    return UINT16 if vocab_size <= 1 << 16 else UINT32


def format_for_dtype(dtype: str) -> ShardFormat:
    """'uint16' or 'uint32' (as written in manifest.json) -> the shard format."""
    by_name = {"uint16": UINT16, "uint32": UINT32}
    if dtype not in by_name:
        raise ValueError(f"unknown token dtype {dtype!r}; expected 'uint16' or 'uint32'")
    return by_name[dtype]


def dtype_name(shard_format: ShardFormat) -> str:
    return "uint16" if shard_format is UINT16 else "uint32"


def encode_header(shard_format: ShardFormat, count: int) -> bytes:
    if not 0 <= count < 1 << 31:
        raise ValueError(f"a shard holds at most 2**31 - 1 tokens, not {count}")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (shard_format.magic, shard_format.version, count)
    return header.tobytes()


def decode_header(header: bytes, source: str = "shard") -> tuple[ShardFormat, int]:
    """(format, token count) from the first 1,024 bytes; a clear error for anything else."""
    if len(header) < HEADER_BYTES:
        raise ValueError(f"{source}: {len(header)} bytes is shorter than the 1,024-byte header")
    magic, version, count = np.frombuffer(header[:12], dtype="<i4").tolist()
    shard_format = _BY_MAGIC.get(magic)
    if shard_format is None:
        raise ValueError(f"{source}: magic {magic} is neither 20240520 (uint16) nor 20240801 (uint32)")
    if version != shard_format.version:
        raise ValueError(f"{source}: version {version} does not go with magic {magic}")
    return shard_format, count


def write_shard(handle: BinaryIO, tokens: np.ndarray, shard_format: ShardFormat) -> None:
    """Write one whole shard (header + tokens) to an open binary file."""
    handle.write(encode_header(shard_format, len(tokens)))
    handle.write(np.ascontiguousarray(tokens, dtype=shard_format.dtype).tobytes())


def read_shard(path: str | Path, mmap: bool = True) -> np.ndarray:
    """The tokens of a shard, memory-mapped by default; the length is checked against the header."""
    with open(path, "rb") as handle:
        shard_format, count = decode_header(handle.read(HEADER_BYTES), str(path))
    size = Path(path).stat().st_size
    expected = HEADER_BYTES + count * shard_format.dtype.itemsize
    if size != expected:
        raise ValueError(f"{path}: header says {count} tokens ({expected} bytes) but the file has {size}")
    if mmap:
        return np.memmap(path, dtype=shard_format.dtype, mode="r", offset=HEADER_BYTES, shape=(count,))
    return np.fromfile(path, dtype=shard_format.dtype, offset=HEADER_BYTES, count=count)


def index_path(shard_path: str | Path) -> Path:
    return Path(shard_path).with_suffix(".idx")


def read_index(shard_path: str | Path) -> np.ndarray:
    """Document start offsets of a shard (uint64), from the `.idx` file beside it."""
    return np.fromfile(index_path(shard_path), dtype="<u8")
