"""MBRLPusher stack: the PETS 7-DOF arm pushes a cylinder to a FIXED goal on the table (no
goal fields: the observation stream carries the 20 observation entries only), with the
CachedPETS base controller (PETS's actions at the states it visited, nearest neighbour) and
a learned residual. 7 joint torques in [-2, 2] N m, T = 150 steps, dense reward: results
are returns (the monitor's and `rpl bag eval`'s episode_return). The sim bridge also
publishes the arm's joints on joint_states.

controller:=pets plans with CEM through its ensemble at every step: about 250 ms per step
with its default settings on a 2-core machine (PETSConfig in rpl_base_controllers/pets.py;
18 s at Chua et al.'s), six times the task's 40 ms control period (4 x 0.01 s), so run it
with mode:=lockstep (the sim bridge waits for every base action), not in real time.
cached_pets, a nearest-neighbour look-up among 500 of PETS's (state, action) pairs (its
shipped cache: the 15,000-step PETS at horizon 25), takes about 0.03 ms.

Three nodes in one namespace: sim_bridge (required), base_controller and residual_node
(both respawn; a crash loop ends the launch), with monitor:=true an episode monitor,
with record:=true bag:=PATH a bag recorder. A bad launch argument (controller not
registered for the task, seed not an integer, ...) stops the launch before any node starts.
Parameters: config/sim_bridge.yaml, config/base_controller.yaml,
config/residual_node.yaml, then config/mbrl_pusher.yaml, then
the launch arguments.

Run (full ROS 2 install):  ros2 launch rpl_bringup mbrl_pusher.launch.py episodes:=20
Run (pip install only):    rpl launch rpl_bringup mbrl_pusher.launch.py episodes:=20
Launch arguments:          controller, model_path, allow_model_mismatch, episodes, mode,
                           seed, namespace, monitor, results, command_timeout, max_rate,
                           record, bag, and one per parameter of the task's controllers
                           (`rpl launch rpl_bringup mbrl_pusher.launch.py --show-args`)
"""

from rpl_bringup.stack_launch import stack_launch_description


def generate_launch_description():
    return stack_launch_description(task='mbrl_pusher', default_controller='cached_pets')
