"""Byte-level BPE training: split text into chunks, count them, then merge the most frequent pair.

The work is in two halves so that Spark can do the first one over any corpus:
1. `count_chunks`: the split pattern (GPT-4's by default) cuts text into chunks; each distinct chunk's
   UTF-8 bytes are counted. A corpus of any size becomes a table of distinct chunks, which is small.
2. `train_merges`: on that table, repeatedly count adjacent symbol pairs (weighted by chunk count),
   merge the most frequent pair into a new token, and update only the chunks that held it.

Tie-breaking is deterministic and documented: among pairs of equal count the smallest pair wins,
comparing (left id, right id) as integers, where bytes are ids 0..255 and the n-th merge is id 255 + n.
rustbpe breaks ties the same way, so the two give identical merges on the same chunk table.
Pair counts include overlapping occurrences ('aaa' counts (a, a) twice); merging rewrites a chunk left
to right ('aaa' -> 'aa' 'a').
"""

from __future__ import annotations

import base64
import gc
import heapq
import json
import multiprocessing
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import pyarrow as pa
import regex
import tiktoken

from tokenmill.pipeline.storage import S3Options, join, write_atomic
from tokenmill.tokenizer.encodings import (
    CONFIG_FILE,
    ENDOFTEXT,
    GPT4_PATTERN,
    RANK_FILE,
    EncodingSpec,
    check_ranks,
    encoding_for,
    sha256_hex,
)

_PAIR_SHIFT = 32  # a pair (a, b) is the int a << 32 | b: ordered like the tuple, cheap to hash


def _count_strings(texts: Iterable[str], pattern: str) -> Counter[str]:
    split = regex.compile(pattern).findall
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(split(text))
    return counts


def count_chunks(texts: Iterable[str], pattern: str = GPT4_PATTERN, processes: int = 1) -> Counter[bytes]:
    """How often each distinct chunk (as UTF-8 bytes) occurs in the texts; with processes > 1 the
    texts are split among that many worker processes (the split is the costly half of counting)."""
    if processes > 1:
        texts = list(texts)
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            parts = pool.starmap(_count_strings, [(texts[k::processes], pattern) for k in range(processes)])
        counts = parts[0]
        for part in parts[1:]:
            counts.update(part)
    else:
        counts = _count_strings(texts, pattern)
    return Counter({chunk.encode("utf-8"): count for chunk, count in counts.items()})


def count_chunk_batches(
    batches: Iterable[pa.RecordBatch], pattern: str = GPT4_PATTERN, rows_per_batch: int = 65536
) -> Iterator[pa.RecordBatch]:
    """Spark's half of training: (text) batches -> (chunk, count) batches, one row per distinct chunk of
    everything this iterator saw, so that far fewer rows than chunks cross the shuffle."""
    counts = count_chunks(
        (text for batch in batches for text in batch.column("text").to_pylist() if text), pattern
    )
    items = list(counts.items())
    for begin in range(0, len(items), rows_per_batch):
        part = items[begin : begin + rows_per_batch]
        yield pa.RecordBatch.from_arrays(
            [pa.array([chunk for chunk, _ in part], pa.binary()), pa.array([n for _, n in part], pa.int64())],
            names=["chunk", "count"],
        )


def train_merges(chunk_counts: Mapping[bytes, int], num_merges: int) -> list[tuple[int, int]]:
    """The first `num_merges` merges as (left id, right id); fewer when no pair is left to merge.

    Python's cycle collector is paused meanwhile: the loop allocates millions of small lists that can
    never form cycles, and collecting after them would scan the whole chunk table again and again
    (it nearly doubles the time at 32k merges)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _train_merges(chunk_counts, num_merges)
    finally:
        if was_enabled:
            gc.enable()


def _train_merges(chunk_counts: Mapping[bytes, int], num_merges: int) -> list[tuple[int, int]]:
    words: list[list[int]] = []
    weights: list[int] = []
    pair_counts: dict[int, int] = defaultdict(int)
    holders: dict[int, set[int]] = defaultdict(set)  # pair -> chunks that hold (or held) it
    for chunk, count in chunk_counts.items():
        if len(chunk) < 2 or count <= 0:
            continue
        index = len(words)
        words.append(list(chunk))
        weights.append(count)
        for left, right in zip(chunk, chunk[1:], strict=False):
            pair = left << _PAIR_SHIFT | right
            pair_counts[pair] += count
            holders[pair].add(index)

    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    while heap and len(merges) < num_merges:
        negative, pair = heapq.heappop(heap)
        current = pair_counts.get(pair, 0)
        if current <= 0:
            continue
        if current != -negative:  # stale entry: counts of old pairs only fall, so requeue and retry
            heapq.heappush(heap, (-current, pair))
            continue
        left, right = pair >> _PAIR_SHIFT, pair & 0xFFFFFFFF
        new_id = 256 + len(merges)
        merges.append((left, right))
        created: dict[int, None] = {}  # pairs holding new_id, in order of appearance
        for index in holders.pop(pair):
            # Rewrite chunk `index` left to right and move its weight from the pairs that vanish to the
            # pairs that appear. Only the boundaries beside a merge change, so only those are touched.
            word = words[index]
            candidates = word.count(left)  # count and index scan in C; most symbols are not `left`
            if not candidates:
                continue  # a stale holder: an earlier merge took the pair from this chunk
            n, weight = len(word), weights[index]
            out: list[int] = []
            start, i = 0, -1  # word[start:] is not yet copied to out
            for _ in range(candidates):
                i = word.index(left, i + 1)
                if i < start or i + 1 == n or word[i + 1] != right:  # taken by the last merge, or no pair
                    continue
                out += word[start:i]
                if i:  # the boundary before: (word[i-1], left) becomes (out[-1], new_id)
                    pair_counts[word[i - 1] << _PAIR_SHIFT | left] -= weight
                    key = out[-1] << _PAIR_SHIFT | new_id
                    pair_counts[key] += weight
                    holders[key].add(index)
                    created[key] = None
                after = i + 2
                # the boundary after, unless another merge starts there (it counts it as its "before")
                if after < n and not (word[after] == left and after + 1 < n and word[after + 1] == right):
                    pair_counts[right << _PAIR_SHIFT | word[after]] -= weight
                    key = new_id << _PAIR_SHIFT | word[after]
                    pair_counts[key] += weight
                    holders[key].add(index)
                    created[key] = None
                out.append(new_id)
                start = after
            if start:
                out += word[start:]
                words[index] = out
        del pair_counts[pair]
        for key in created:
            if pair_counts[key] > 0:
                heapq.heappush(heap, (-pair_counts[key], key))
    return merges


def merges_to_ranks(merges: Iterable[tuple[int, int]]) -> dict[bytes, int]:
    """Ranks as tiktoken wants them: the 256 bytes, then each merge's bytes in merge order."""
    vocab = [bytes([byte]) for byte in range(256)]
    for left, right in merges:
        vocab.append(vocab[left] + vocab[right])
    return {token: rank for rank, token in enumerate(vocab)}


@dataclass(frozen=True)
class TrainedTokenizer:
    """A vocabulary tokenmill trained: what `save` writes and `tokenizer.load_encoding(directory)` reads."""

    name: str
    pattern: str
    ranks: dict[bytes, int]
    special_tokens: dict[str, int]

    @classmethod
    def from_merges(
        cls,
        name: str,
        merges: list[tuple[int, int]],
        pattern: str = GPT4_PATTERN,
        special_tokens: tuple[str, ...] = (ENDOFTEXT,),
    ) -> TrainedTokenizer:
        ranks = merges_to_ranks(merges)
        specials = {token: len(ranks) + offset for offset, token in enumerate(special_tokens)}
        return cls(name, pattern, ranks, specials)

    @property
    def vocab_size(self) -> int:
        return len(self.ranks) + len(self.special_tokens)

    def rank_file(self) -> bytes:
        """tiktoken's format: `base64(token) rank` per line, in rank order."""
        check_ranks(self.ranks, self.name)
        ordered = sorted(self.ranks.items(), key=lambda item: item[1])
        return b"".join(base64.b64encode(token) + b" %d\n" % rank for token, rank in ordered)

    def spec(self, source: str = "") -> EncodingSpec:
        data = self.rank_file()
        return EncodingSpec(
            self.name, source or self.name, self.pattern, dict(self.special_tokens), sha256_hex(data), data
        )

    def encoding(self) -> tiktoken.Encoding:
        return encoding_for(self.spec())

    def save(self, directory: str, s3: S3Options | None = None, extra: dict | None = None) -> str:
        """Write `tokenizer.tiktoken` then `tokenizer.json` (last: it names the rank file's sha256, so a
        directory with a config always has the matching ranks). Returns the directory."""
        s3 = s3 or S3Options()
        data = self.rank_file()
        config = {
            "name": self.name,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "vocab_size": self.vocab_size,
            "rank_file_sha256": sha256_hex(data),
            **(extra or {}),
        }
        write_atomic(join(directory, RANK_FILE), data, s3)
        write_atomic(join(directory, CONFIG_FILE), json.dumps(config, indent=1).encode(), s3)
        return directory


def num_merges_for(vocab_size: int, special_tokens: tuple[str, ...] = (ENDOFTEXT,)) -> int:
    """`vocab_size` counts everything: 256 bytes + merges + special tokens."""
    merges = vocab_size - 256 - len(special_tokens)
    if merges < 0:
        raise ValueError(f"vocab size {vocab_size} is below 256 bytes + {len(special_tokens)} special tokens")
    return merges


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    name: str | None = None,
    pattern: str = GPT4_PATTERN,
    special_tokens: tuple[str, ...] = (ENDOFTEXT,),
) -> TrainedTokenizer:
    """Train on one machine: count chunks (on every core), then merge."""
    counts = count_chunks(texts, pattern, processes=os.cpu_count() or 1)
    merges = train_merges(counts, num_merges_for(vocab_size, special_tokens))
    return TrainedTokenizer.from_merges(name or f"bpe-{vocab_size}", merges, pattern, special_tokens)
