"""ROS 2 shell of a base controller: observation in, base action out.

Subscribes ``observation`` and publishes ``base_action`` with the same (episode, step) and
the controller's name as ``header.frame_id``, plus ``/diagnostics`` (~1 Hz, with compute
time). The controller is any name registered in :mod:`rpl_base_controllers.registry`
(parameter ``controller``); the observation layout comes from the task named in the
observation's ``frame_id`` (or the ``task`` parameter). Malformed observations are
rejected with a throttled log line; the node never crashes on a message.

Every valid observation is answered, a repeated one too: the sim bridge re-sends
observation (0, 0) until its first command arrives (start-up handshake). A repetition of
the last answered step with the same values gets the same action again, without calling
the controller (a planning controller keeps state between calls, so a second call could
answer differently and change the episode).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
from sensor_msgs.msg import JointState

from rpl_base_controllers.base import BaseController
from rpl_base_controllers.registry import controller_info, make_controller
from rpl_interfaces import contract
from rpl_interfaces.base_node import RplNode, run_node
from rpl_interfaces.codec import MessageError, decode
from rpl_interfaces.log_throttle import LogThrottle
from rpl_interfaces.params import describe
from rpl_sim_bridge.bridge import check_payload
from rpl_sim_bridge.bridge import observation_layout as make_layout
from rpl_sim_bridge.tasks import task_spec

DIAGNOSTICS_PERIOD_S = 1.0
LOG_PERIOD_S = 2.0
COMPUTE_WINDOW = 256  # compute times (s) kept for the diagnostics mean / max


@dataclasses.dataclass(frozen=True)
class ControllerNodeConfig:
    """Parameters of the controller node (defaults mirrored in config/base_controller.yaml)."""

    controller: str = dataclasses.field(
        default='reactive_push',
        metadata=describe('Registered base controller name (rpl_base_controllers.registry).'),
    )
    task: str = dataclasses.field(
        default='',
        metadata=describe(
            'Task the controller runs on (planning controllers build their model from it); '
            "'' = the task named in each observation's frame_id."
        ),
    )


class ControllerNode(RplNode):
    """Controller node; see the module docstring."""

    def __init__(self) -> None:
        super().__init__('base_controller')
        self.config = self.declare_config(ControllerNodeConfig)
        cfg = self.config
        controller_info(cfg.controller)  # unknown name: ValueError listing the known ones
        self._controller: BaseController | None = None
        self._task: str | None = None
        self._layout: contract.ObservationLayout | None = None
        if cfg.task:
            self._bind_task(cfg.task)
        self._episode = -1
        self._step = -1
        self._answered: tuple[np.ndarray, np.ndarray] | None = None  # (payload, action)
        self._pub = self.control_publisher(contract.BASE_ACTION)
        self._diag_pub = self.make_diagnostics()
        self._sub = self.control_subscription(contract.OBSERVATION, self._on_observation)
        self._log = LogThrottle(LOG_PERIOD_S)
        self._actions = 0
        self._repeated = 0
        self._rejected = 0
        self._compute_s = np.zeros(COMPUTE_WINDOW)  # ring buffer of the latest compute times
        self._period_actions = 0
        self._last_error = ''
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._on_diagnostics)
        self.get_logger().info(
            f'controller {cfg.controller!r}, task {cfg.task or "from observation frame_id"}'
        )

    def _bind_task(self, task: str) -> None:
        """Build the controller and observation layout for ``task`` (ValueError if unsuited)."""
        layout = make_layout(task_spec(task))
        self._controller = make_controller(self.config.controller, task)
        self._task, self._layout = task, layout
        self._episode = self._step = -1
        self._answered = None

    def _on_observation(self, msg: JointState) -> None:
        now = time.monotonic()
        try:
            task = self.config.task or msg.header.frame_id
            if task != self._task:
                self._bind_task(task)
            vec = decode(msg, self._layout.fields)
            problem = check_payload(vec.values, len(self._layout.fields))
            if problem is not None:
                raise MessageError(problem)
        except ValueError as exc:  # MessageError, unknown or unsuited task
            self._reject(f'observation (frame_id {msg.header.frame_id!r}): {exc}', now)
            return
        answered = self._answered
        if (
            answered is not None
            and (vec.episode, vec.step) == (self._episode, self._step)
            and np.array_equal(vec.values, answered[0])
        ):
            self._publish(vec.episode, vec.step, answered[1])  # a re-sent observation
            self._repeated += 1
            return
        self._answered = None
        if vec.episode != self._episode or vec.step <= self._step:
            self._controller.reset()  # a new episode, or the sim bridge started again
        self._episode, self._step = vec.episode, vec.step
        layout = self._layout
        start = time.perf_counter()
        try:
            action = np.asarray(
                self._controller(vec.values[layout.observation], vec.values[layout.desired_goal]),
                dtype=np.float64,
            )
        except ValueError as exc:
            self._reject(
                f'controller refused (episode {vec.episode}, step {vec.step}): {exc}', now
            )
            return
        elapsed = time.perf_counter() - start
        problem = check_payload(action, len(contract.ACTION_FIELDS))
        if problem is not None:
            self._reject(f'controller output for step {vec.step} not published: {problem}', now)
            return
        self._publish(vec.episode, vec.step, action)
        self._answered = (vec.values, action)
        self._compute_s[self._actions % COMPUTE_WINDOW] = elapsed
        self._actions += 1
        self._period_actions += 1

    def _publish(self, episode: int, step: int, action: np.ndarray) -> None:
        self.publish_vector(
            self._pub, episode, step, action, contract.ACTION_FIELDS, self.config.controller
        )

    def _reject(self, reason: str, now: float) -> None:
        self._rejected += 1
        self._last_error = reason
        log, held = self._log.should_log(now)
        if log:
            more = f' ({held} more since the last line)' if held else ''
            self.get_logger().warn(f'rejected {reason}{more}')

    def _on_diagnostics(self) -> None:
        count = self._period_actions
        window = self._compute_s[: min(self._actions, COMPUTE_WINDOW)]
        mean_us = 1e6 * float(window.mean()) if window.size else 0.0
        max_us = 1e6 * float(window.max()) if window.size else 0.0
        values = {
            'controller': self.config.controller,
            'task': self._task or '',
            'episode': self._episode,
            'step': self._step,
            'actions_total': self._actions,
            'repeated_observations': self._repeated,  # answered again with the same action
            'actions_per_s': f'{count / DIAGNOSTICS_PERIOD_S:.1f}',
            'compute_mean_us': f'{mean_us:.1f}',  # over the latest COMPUTE_WINDOW actions
            'compute_max_us': f'{max_us:.1f}',
            'rejected': self._rejected,
            'last_error': self._last_error,
        }
        level = 'warn' if self._last_error else 'ok'
        message = f'{count} actions in the last period'
        self._last_error = ''
        self._period_actions = 0
        self.publish_diagnostics(self._diag_pub, level, message, values)


def main(args: Sequence[str] | None = None) -> int:
    """Console script ``controller_node``: run the node until interrupted."""
    return run_node(ControllerNode, args, name='base_controller')


if __name__ == '__main__':
    raise SystemExit(main())
