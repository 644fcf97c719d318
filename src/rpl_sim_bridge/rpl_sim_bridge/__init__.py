"""MuJoCo goal tasks (Fetch push family) and the simulator bridge node."""
