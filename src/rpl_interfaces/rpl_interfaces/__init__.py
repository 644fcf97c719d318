"""RPL topic contract: topic names, QoS roles, message codecs, shared node base."""

__version__ = '0.1.0'
"""The project version (one constant; written into every exported model's metadata)."""
