"""ComplexHook stack: pull an out-of-reach object to its goal with an L-shaped hook, the
object drawn from a procedurally generated library (varied shape, mass and friction) and
5-15 random static bumps on the table at every reset, neither visible in the state; the
ReactiveHook base controller (about 0.55 success in the paper), a learned residual.
40-D observation (the 25 Fetch entries, then 15 of the hook), T = 100 steps.

Three nodes in one namespace: sim_bridge (required), base_controller and residual_node
(both respawn; a crash loop ends the launch), with monitor:=true an episode monitor,
with record:=true bag:=PATH a bag recorder. A bad launch argument (controller not
registered for the task, seed not an integer, ...) stops the launch before any node starts.
Parameters: config/sim_bridge.yaml, config/base_controller.yaml,
config/residual_node.yaml, then config/complex_hook.yaml, then
the launch arguments.

Run (full ROS 2 install):  ros2 launch rpl_bringup complex_hook.launch.py episodes:=20
Run (pip install only):    rpl launch rpl_bringup complex_hook.launch.py episodes:=20
Launch arguments:          controller, model_path, allow_model_mismatch, episodes, mode,
                           seed, namespace, monitor, results, command_timeout, max_rate,
                           record, bag, and one per parameter of the task's controllers
                           (`rpl launch rpl_bringup complex_hook.launch.py --show-args`)
"""

from rpl_bringup.stack_launch import stack_launch_description


def generate_launch_description():
    return stack_launch_description(task='complex_hook', default_controller='reactive_hook')
