"""Runnable examples: ``prefork run examples.hello:Hello`` from the repository's root."""
