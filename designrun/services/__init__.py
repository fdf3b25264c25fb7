"""The domain: plain functions that own their transaction and raise designrun.errors types."""
