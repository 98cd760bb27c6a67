"""Tokenization into token shards (DESIGN.md §5): standard encodings, BPE training, shard formats."""
