"""Tokenization into token shards: standard encodings, BPE training, shard formats."""

from tokenmill.tokenizer.encodings import ENDOFTEXT, load_encoding, load_spec

__all__ = ["ENDOFTEXT", "load_encoding", "load_spec"]
