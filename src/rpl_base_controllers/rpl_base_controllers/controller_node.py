"""ROS 2 shell of a base controller: observation in, base action out.

Subscribes ``observation`` and publishes ``base_action`` with the same (episode, step) and
the controller's name as ``header.frame_id``, plus ``/diagnostics`` (~1 Hz, with compute
time). The controller is any name registered in :mod:`rpl_base_controllers.registry`
(parameter ``controller``); the observation layout comes from the task named in the
observation's ``frame_id`` (or the ``task`` parameter). Malformed observations are
rejected with a throttled log line; the node never crashes on a message.

Every valid observation is answered, a repeated one too: the sim bridge re-sends
observation (0, 0) until its first command arrives (start-up handshake). Which controller
state each step is computed from is decided by
:class:`rpl_base_controllers.base.SequencedController`: step k from the state after step
k - 1, a repetition with the same values gets the same action without a call (a planning
controller keeps state between calls, so a second call could answer differently and change
the episode), a message with another step id (forged, or a restarted sim) never resets or
changes the state the real sequence builds on, and a later valid message for the same step
wins. An invalid message (undecodable, non-finite, unknown task) changes nothing; a message
naming another task gets a controller of its own. The terminal observation o_T (``frame_id``
``<task>/terminal``, :func:`rpl_interfaces.contract.is_terminal`, published after an
episode's last step) is not answered: no base action, not a rejection, the controller's
state untouched (counted as ``terminal_observations`` in /diagnostics).

The controller's own typed parameters (:attr:`rpl_base_controllers.registry.ControllerInfo.
params`, e.g. ``carry_gain``) are declared as ROS parameters of the node under their names,
with the registered defaults (``--ros-args -p carry_gain:=50.0``, a parameter file); the
string parameter ``controller_params`` (``'carry_gain=50'``, how the launch files pass the
launch argument ``carry_gain:=50``) overrides them. An unknown name or a bad value stops the
node at start with one line.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState

from rpl_base_controllers import base as base_module
from rpl_base_controllers.base import SequencedController
from rpl_base_controllers.registry import (
    controller_config,
    controller_info,
    make_controller,
    params_from_text,
    stated_params,
)
from rpl_interfaces import contract
from rpl_interfaces.base_node import (
    RplNode,
    constraints_text,
    parameter_descriptor,
    run_node,
)
from rpl_interfaces.codec import MessageError, decode
from rpl_interfaces.failures import raised_at
from rpl_interfaces.log_throttle import LogThrottle
from rpl_interfaces.params import ParameterError, describe
from rpl_sim_bridge.bridge import check_payload
from rpl_sim_bridge.bridge import observation_layout as make_layout

DIAGNOSTICS_PERIOD_S = 1.0
LOG_PERIOD_S = 2.0
_NUMBERS = re.compile(r'[-+]?\d[\d.]*(?:e[-+]?\d+)?')


def rejection_kind(reason: str) -> str:
    """The log throttle's key of a rejection: its text without numbers (step ids, values),
    so each kind of rejection is said at once, not hidden behind another's period."""
    return _NUMBERS.sub('#', reason)


COMPUTE_WINDOW = 256  # compute times (s) kept for the diagnostics mean / max
# First outputs, all of another size than the task's action, after which the node exits.
WRONG_SIZE_EXIT = 3


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
    controller_params: str = dataclasses.field(
        default='',
        metadata=describe(
            "The controller's parameters as NAME=VALUE,... (e.g. 'carry_gain=50'; the launch "
            "files' controller-parameter arguments); they override the node's parameters of "
            "those names. '' = none."
        ),
    )
    silence_warning_s: float = dataclasses.field(
        default=10.0,
        metadata=describe(
            'With no observation this long (s) after start and no publisher of it, warn once '
            'naming the topic listened on (a node outside the stack namespace hears nothing); '
            '0 = never',
            range=(0.0, 3600.0),
        ),
    )


class _Bound(NamedTuple):
    """A controller built for one task, with the payload layout of that task."""

    layout: contract.ObservationLayout
    sequencer: SequencedController
    action_fields: tuple[str, ...]  # the task spec's: the base action's payload names
    action_bounds: tuple[float, float]  # the task spec's action_low / action_high


class ControllerNode(RplNode):
    """Controller node; see the module docstring."""

    def __init__(self) -> None:
        super().__init__('base_controller')
        self.config = self.declare_config(
            ControllerNodeConfig,
            also_known=lambda cfg: [p.name for p in controller_info(cfg.controller).params],
        )
        cfg = self.config
        # Unknown name, bad parameter value: ValueError (one line, exit code 2).
        self._params = self._declare_controller_params(cfg.controller)
        self._bound: dict[str, _Bound] = {}  # task name -> its controller
        self._other_tasks_noted: set[str] = set()  # streamed tasks warned about
        self._task = ''
        if cfg.task:
            self._bind_task(cfg.task)
        self._episode = -1
        self._step = -1
        self._pub = self.control_publisher(contract.BASE_ACTION)
        self._diag_pub = self.make_diagnostics()
        self._sub = self.control_subscription(contract.OBSERVATION, self._on_observation)
        self._heard = False
        self.warn_when_unheard(
            cfg.silence_warning_s, {contract.OBSERVATION: self._sub}, lambda: self._heard
        )
        self._log = LogThrottle(LOG_PERIOD_S)
        self._bounds_log = LogThrottle(LOG_PERIOD_S)
        self._actions = 0
        self._repeated = 0
        self._out_of_sequence = 0  # answers without an answered predecessor ('jump')
        self._rejected = 0
        self._wrong_sizes = 0  # outputs of another size than the task's, before any action
        self._outside_bounds = 0  # published actions outside the task's action bounds
        self._terminal = 0  # terminal observations o_T seen (never answered)
        self._compute_s = np.zeros(COMPUTE_WINDOW)  # ring buffer of the latest compute times
        self._period_actions = 0
        self._last_error = ''
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._on_diagnostics)
        stated = stated_params(cfg.controller, self._params)
        self.get_logger().info(
            f'controller {cfg.controller!r} ({stated or "default parameters"}), task '
            f'{cfg.task or "from observation frame_id"}'
        )

    def _declare_controller_params(self, name: str) -> dict[str, Any]:
        """Declare the controller's typed parameters (read-only, with their ROS ranges, as
        :meth:`declare_config` does); ``controller_params`` overrides them. Returns the
        checked values by name."""
        given = params_from_text(name, self.config.controller_params)
        values, fields = {}, {}
        for param in controller_info(name).params:
            meta = {'description': f'{name}: {param.description}'}
            meta.update(
                {k: v for k, v in (('range', param.range), ('choices', param.choices)) if v}
            )
            fields[param.name] = dataclasses.field(default=param.default, metadata=meta)
            text = ParameterDescriptor(
                description=meta['description'], additional_constraints=constraints_text(meta)
            )
            values[param.name] = self.declare_parameter(param.name, param.default, text).value
        overrides = self.given_parameters()
        both = sorted(k for k in given if k in overrides and overrides[k].value != given[k])
        if both:
            key = both[0]
            raise ParameterError(
                f'controller parameter {key!r} is given twice with different values: '
                f'controller_params {key}={given[key]} and {key}:={overrides[key].value}; '
                'give it once'
            )
        values.update(given)
        controller_config(name, self.config.task or None, **values)  # checked before any message
        # What the controller runs with is what `ros2 param get` shows.
        self.set_parameters([Parameter(key, value=value) for key, value in given.items()])
        for key, field in fields.items():
            descriptor = parameter_descriptor(field)
            descriptor.type = self.describe_parameter(key).type
            self.set_descriptor(key, descriptor)
        return values

    def _bind_task(self, task: str) -> _Bound:
        """Build the controller and observation layout for ``task`` (ValueError if unsuited).

        Other tasks' controllers are left as they are."""
        # The registry's specs need no MuJoCo (rpl_sim_bridge.tasks.specs), so a robot without
        # the simulator binds the Fetch tasks (tests/test_node_imports.py).
        from rpl_sim_bridge.tasks import task_spec

        spec = task_spec(task)
        layout = make_layout(spec)
        bound = _Bound(
            layout,
            SequencedController(make_controller(self.config.controller, task, **self._params)),
            tuple(spec.action_fields),
            (float(spec.action_low), float(spec.action_high)),
        )
        self._bound[task] = bound
        return bound

    def _note_other_task(self, streamed: str) -> None:
        """One warning per streamed task that differs from the ``task`` parameter: the
        controller answers it as its own task (a parameter file of another task, e.g.
        push.yaml on a slippery_push stack, planned on Push's dynamics without a word)."""
        if streamed in self._other_tasks_noted or len(self._other_tasks_noted) >= 16:
            return  # (a frame_id that changes every message: 16 lines, then quiet)
        self._other_tasks_noted.add(streamed)
        self.get_logger().warning(
            f'the observations are of task {streamed!r} (their frame_id) but this controller '
            f'is bound to task {self.config.task!r} (its task parameter): it answers them as '
            f"{self.config.task!r}; give the stack's task (task:={streamed}), or leave task "
            "empty to follow the observations' own"
        )

    def _on_observation(self, msg: JointState) -> None:
        now = time.monotonic()
        self._heard = True
        tag = msg.header.frame_id
        terminal = contract.is_terminal(tag)
        streamed = contract.task_of_tag(tag)
        if self.config.task and streamed and streamed != self.config.task:
            self._note_other_task(streamed)
        try:
            task = self.config.task or streamed
            bound = self._bound.get(task) or self._bind_task(task)
            vec = decode(msg, bound.layout.fields)
            problem = check_payload(vec.values, len(bound.layout.fields))
            if problem is not None:
                raise MessageError(problem)
        except ValueError as exc:  # MessageError, unknown or unsuited task
            self._reject(f'observation (frame_id {msg.header.frame_id!r}): {exc}', now)
            return
        layout = bound.layout
        start = time.perf_counter()
        try:
            action, kind = bound.sequencer.answer(
                vec.episode,
                vec.step,
                vec.values,
                vec.values[layout.observation],
                vec.values[layout.desired_goal],
                terminal=terminal,
            )
        except ValueError as exc:
            self._reject(
                f'controller refused (episode {vec.episode}, step {vec.step}): {exc}', now
            )
            return
        except Exception as exc:  # a failure of its own code: this step only, as a refusal
            # (it killed the node, and the re-sent observation the respawned one: a crash
            # loop that stopped the whole stack on one corner-case state)
            where = raised_at(exc, skip=[__file__, base_module.__file__])
            self._reject(
                f'controller raised (episode {vec.episode}, step {vec.step}): {where}; no base '
                'action for this step',
                now,
            )
            return
        elapsed = time.perf_counter() - start
        if action is None:  # the terminal observation: no step to act in
            self._terminal += 1
            return
        problem = check_payload(action, len(bound.action_fields))
        if problem is not None:
            self._reject(f'controller output for step {vec.step} not published: {problem}', now)
            self._wrong_size_at_start(np.shape(action), task, bound)
            return
        self._publish(vec.episode, vec.step, action, bound.action_fields)
        if kind == 'repeat':  # a re-sent observation
            self._repeated += 1
            return
        low, high = bound.action_bounds
        if action.min() < low or action.max() > high:  # published: the stack clips it
            self._outside_bounds += 1
            log, held = self._bounds_log.should_log(now)  # its own: rejections stay in view
            if log:
                more = f' ({held} more since the last line)' if held else ''
                self.get_logger().warning(
                    f'controller output for step {vec.step} {action.tolist()} is outside the '
                    f"task's action bounds [{low:g}, {high:g}] (published; every command is "
                    f'clipped to the bounds){more}'
                )
        if kind == 'jump':
            self._out_of_sequence += 1
        self._task, self._episode, self._step = task, vec.episode, vec.step
        self._compute_s[self._actions % COMPUTE_WINDOW] = elapsed
        self._actions += 1
        self._period_actions += 1

    def _publish(
        self, episode: int, step: int, action: np.ndarray, fields: tuple[str, ...]
    ) -> None:
        self.publish_vector(self._pub, episode, step, action, fields, self.config.controller)

    def _wrong_size_at_start(self, shape: tuple[int, ...], task: str, bound: _Bound) -> None:
        """Exit 1 with one line when the controller's first outputs all have another size
        than the task's action: a controller for another robot, which no step will mend (the
        stack applied the zero action, a second a step, for 110 s before it said so). Later
        or single wrong outputs stay refusals of their step."""
        size = len(bound.action_fields)
        if self._actions or shape == (size,):  # it has acted, or the values were the fault
            return
        self._wrong_sizes += 1
        if self._wrong_sizes < WRONG_SIZE_EXIT:
            return
        self.get_logger().error(
            f'controller {self.config.controller!r} gave {self._wrong_sizes} actions of shape '
            f'{shape} and none of shape ({size},), the {size} values task {task!r} takes '
            f'({", ".join(bound.action_fields)}): a controller for another robot or task?; '
            'exiting with code 1'
        )
        self.request_exit(1)

    def _reject(self, reason: str, now: float) -> None:
        self._rejected += 1
        self._last_error = reason
        log, held = self._log.should_log(now, rejection_kind(reason))
        if log:
            more = f' ({held} more since the last line)' if held else ''
            self.get_logger().warning(f'rejected {reason}{more}')

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
            'out_of_sequence': self._out_of_sequence,  # no answered predecessor step
            'actions_per_s': f'{count / DIAGNOSTICS_PERIOD_S:.1f}',
            'compute_mean_us': f'{mean_us:.1f}',  # over the latest COMPUTE_WINDOW actions
            'compute_max_us': f'{max_us:.1f}',
            'rejected': self._rejected,
            'outside_bounds': self._outside_bounds,
            'terminal_observations': self._terminal,  # o_T after each episode, not answered
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
