"""SlipperyPush live learning: the watched stack, exploring stacks and the trainer node.

The watched stack (namespace, default /rpl) runs the ReactivePush base controller plus the
residual model at model_path WITHOUT exploration; explorers:=N (0..4, default 1) more
stacks in <namespace>/explore_<i> run the same model with exploration (explore_noise,
explore_random) on sim seeds seed + (i + 1) * 1000000; the trainer node (rpl_trainer)
learns from every stack, exports a new model to model_path every export_every_updates
gradient steps (atomic replace), and every residual node hot-reloads it. The trainer and
every sim bridge are required; episodes:=N ends the launch after N episodes of the watched
stack. init_from:=RUN/checkpoint.pt starts the trainer from an `rpl train` run (warm
start) unless checkpoint names a file that exists. Parameters: config/sim_bridge.yaml,
config/base_controller.yaml, config/residual_node.yaml, then config/slippery_push.yaml,
then the launch arguments.

Run (full ROS 2 install):  ros2 launch rpl_bringup slippery_push_learn.launch.py explorers:=1
Run (pip install only):    rpl launch rpl_bringup slippery_push_learn.launch.py explorers:=1
                           monitor:=true results:=runs/live/results
Launch arguments:          controller, model_path, episodes, seed, namespace, explorers,
                           explore_noise, explore_random, monitor, results, command_timeout,
                           max_rate, bags, checkpoint, init_from, train_overrides,
                           updates_per_step, export_every_updates, and one per parameter
                           of the task's controllers
                           (`rpl launch rpl_bringup slippery_push_learn.launch.py --show-args`)
"""

from rpl_bringup.stack_launch import learn_launch_description


def generate_launch_description():
    return learn_launch_description(task='slippery_push', default_controller='reactive_push')
