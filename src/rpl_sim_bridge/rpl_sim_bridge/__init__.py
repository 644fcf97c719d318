"""MuJoCo goal tasks (Fetch push family) and the simulator bridge node."""

# gymnasium_robotics prints a notice about its Adroit hand tasks (unrelated to Fetch) on
# stderr when imported, from farama_notifications' table: drop that entry first. Every
# import of gymnasium_robotics in this project follows an import of this package.
try:
    import farama_notifications

    farama_notifications.notifications.pop('gymnasium_robotics', None)
except ImportError:  # no table, no notice
    pass
