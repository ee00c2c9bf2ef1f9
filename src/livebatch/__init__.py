"""livebatch: launch a batch of AI-generated exam items and watch it live."""

__version__ = "0.1.0"
