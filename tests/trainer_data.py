"""Small token sets in the `tokenmill tokenize` layout, written with tokenizer.shards, for trainer tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tokenmill.tokenizer.shards import dtype_name, format_for_vocab, write_shard


def random_documents(count: int, vocab_size: int, eot: int, seed: int, lengths: tuple[int, int]) -> list:
    """Documents of random tokens (never the EOT), each opened by the EOT as tokenize writes them."""
    rng = np.random.default_rng(seed)
    ids = [i for i in range(vocab_size) if i != eot]
    return [
        np.concatenate([[eot], rng.choice(ids, size=int(rng.integers(*lengths)))]).astype(np.int64)
        for _ in range(count)
    ]


def web_like_lengths(count: int, seed: int) -> np.ndarray:
    """Document lengths (with the EOT) drawn like web documents: lognormal, mean ~1,000 tokens, a
    third longer than 1,024 and a tenth longer than 2,048."""
    sigma = 1.0
    drawn = np.random.default_rng(seed).lognormal(np.log(1000) - sigma**2 / 2, sigma, count)
    return np.maximum(np.round(drawn), 2).astype(np.int64)


def position_documents(lengths: np.ndarray, eot: int) -> list[np.ndarray]:
    """Documents of these lengths, each opened by the EOT, whose other tokens are their offsets in the
    concatenated documents plus one: every token says where it came from."""
    offsets = np.arange(1, int(lengths.sum()) + 1, dtype=np.int64)
    documents = np.split(offsets, np.cumsum(lengths)[:-1])
    for document in documents:
        document[0] = eot
    return documents


def write_token_set(
    root: Path,
    train_docs: list[np.ndarray],
    val_docs: list[np.ndarray],
    vocab_size: int,
    eot: int,
    shard_tokens: int,
) -> Path:
    """val_000000 holds val_docs; the train documents are one stream cut every `shard_tokens` tokens
    (so documents run across shards); each .idx lists the document starts inside its shard."""
    root.mkdir(parents=True, exist_ok=True)
    shard_format = format_for_vocab(vocab_size)
    train = np.concatenate(train_docs)
    train_starts = np.cumsum([0] + [len(doc) for doc in train_docs[:-1]])
    pieces = [("val", np.concatenate(val_docs), np.cumsum([0] + [len(doc) for doc in val_docs[:-1]]))]
    for begin in range(0, len(train), shard_tokens):
        inside = train_starts[(train_starts >= begin) & (train_starts < begin + shard_tokens)]
        pieces.append(("train", train[begin : begin + shard_tokens], inside - begin))
    shards = []
    for index, (split, tokens, starts) in enumerate(pieces):
        name = f"{split}_{index:06d}"
        with open(root / f"{name}.bin", "wb") as handle:
            write_shard(handle, tokens, shard_format)
        np.asarray(starts, dtype="<u8").tofile(root / f"{name}.idx")
        shards.append(
            {"split": split, "index": index, "bin": f"{name}.bin", "idx": f"{name}.idx",
             "tokens": len(tokens), "documents": len(starts)}
        )  # fmt: skip
    manifest = {
        "format": "tokenmill-tokens/1",
        "tokenizer": {"name": "test", "source": "test", "special_tokens": {"<|endoftext|>": eot}},
        "vocab_size": vocab_size,
        "dtype": dtype_name(shard_format),
        "magic": shard_format.magic,
        "version": shard_format.version,
        "eot_id": eot,
        "counts": {"tokens": int(len(train) + sum(len(doc) for doc in val_docs))},
        "shards": shards,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root
