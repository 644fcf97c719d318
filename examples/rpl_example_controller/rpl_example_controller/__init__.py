"""Example plug-in for RPL: a proportional pusher (controller) and an icy push task."""
