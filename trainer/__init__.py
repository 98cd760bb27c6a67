"""The GPT trainer that reads tokenmill's token shards: GPT in the nanoGPT line, DDP, exact resume, and
supervised fine-tuning from a base model to an assistant.

config: named configs and JSON files · model: the GPT and its KV cache · packing: best-fit windows that
train every token · data: manifest checks, documents, windows, rank streams · fetch: a token set on
s3:// copied into a per-node cache · distributed: processes, devices, collectives · schedule: learning
rates · loop: the step loop, logging, resume decided by rank 0 · train: pretraining · chat: the chat
format and conversations · sft: fine-tuning · checkpoint: exact resume · sample: generation · mfu: FLOPs
and device peaks.
"""
