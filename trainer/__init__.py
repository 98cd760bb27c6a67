"""The GPT trainer that reads tokenmill's token shards (DESIGN.md §6)."""
