"""The example task's stack: icy_push with the example controller by default.

A plug-in task ships no parameter file in rpl_bringup: the stack takes the task's
parameters from its spec (``rpl_bringup.stack_launch.task_parameters``), or from the file
given as ``params_file``. Run it with ``rpl launch examples/rpl_example_controller/launch/
icy_push.launch.py episodes:=2`` (or ``ros2 launch`` with the file's path; the pip package
does not install launch files).
"""

from rpl_bringup.stack_launch import stack_launch_description


def generate_launch_description():
    return stack_launch_description(task='icy_push', default_controller='proportional_push')
