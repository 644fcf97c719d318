"""RPL topic contract: topic names, QoS roles, message codecs, shared node base."""
