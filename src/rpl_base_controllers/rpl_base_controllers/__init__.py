"""Base controllers (pure observation -> action) and the controller node."""
