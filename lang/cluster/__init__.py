"""SPEC §16's cluster bus (Redis Pub/Sub): nothing of the language."""
