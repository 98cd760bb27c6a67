"""The GPT trainer that reads tokenmill's token shards: GPT in the nanoGPT line, DDP, exact resume.

config: named configs and JSON files · model: the GPT and its KV cache · data: manifest checks, windows,
rank streams · fetch: a token set on s3:// copied into a per-node cache · schedule: learning rates ·
train: the loop, DDP, logging · checkpoint: exact resume · sample: generation · mfu: FLOPs and device
peaks.
"""
