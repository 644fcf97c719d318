"""NoisyHook live learning: the watched stack, exploring stacks and the trainer node.

The same launch as ``slippery_push_learn.launch.py`` on the noisy hook task (40-D
observation with Gaussian noise on the block and hook readings, T = 100, base controller
ReactiveHook). The watched stack (namespace, default /rpl) runs ReactiveHook plus the
residual model at model_path WITHOUT exploration; explorers:=N (0..4, default 1) more
stacks in <namespace>/explore_<i> run the same model with exploration on sim seeds
seed + (i + 1) * 1000000; the trainer node learns from every stack, exports a new model to
model_path every export_every_updates gradient steps (atomic replace), and every residual
node hot-reloads it. The defaults follow the shipped training config
(rpl_trainer/train_configs/noisy_hook.yaml): train_overrides adds two_frame=true (the
actor and critic average over the previous and the current observation; the exported
model takes both and the residual nodes feed it the previous reading), the paper's hook
action noise 0.1, residual_scale 0.5 with the finger command's own scale 2
(residual_axis_scales=gripper:2) and the critic on the executed action (HER without
goal-consistent relabelling) to the burn-in settings of the other tasks; explore_noise is
0.1 of the model's scale on each axis (0.05 on the motion, 0.2 on the fingers; all within
residual_limit 2), the trainer's noise.
Parameters: config/sim_bridge.yaml, config/base_controller.yaml, config/residual_node.yaml,
then config/noisy_hook.yaml, then the launch arguments.

Run (full ROS 2 install):  ros2 launch rpl_bringup noisy_hook_learn.launch.py explorers:=1
Run (pip install only):    rpl launch rpl_bringup noisy_hook_learn.launch.py explorers:=1
                           monitor:=true results:=runs/live_hook/results
Launch arguments:          controller, model_path, episodes, seed, namespace, explorers,
                           explore_noise, explore_random, monitor, results, command_timeout,
                           max_rate, bags, checkpoint, init_from, train_overrides,
                           updates_per_step, export_every_updates, and one per parameter
                           of the task's controllers
                           (`rpl launch rpl_bringup noisy_hook_learn.launch.py --show-args`)
"""

from rpl_bringup.stack_arguments import LEARN_TRAIN_OVERRIDES
from rpl_bringup.stack_launch import learn_launch_description

# The trainer node starts from the TrainConfig defaults, not from the shipped config: the
# settings of train_configs/noisy_hook.yaml that matter to a live learner go here.
NOISY_HOOK_TRAIN_OVERRIDES = (
    f'{LEARN_TRAIN_OVERRIDES},two_frame=true,noise_eps=0.1,residual_scale=0.5,'
    'critic_action=executed,goal_consistent_her=false,residual_axis_scales=gripper:2'
)


def generate_launch_description():
    return learn_launch_description(
        task='noisy_hook',
        default_controller='reactive_hook',
        default_train_overrides=NOISY_HOOK_TRAIN_OVERRIDES,
        default_explore_noise=0.1,
    )
