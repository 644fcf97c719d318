"""Launch substitutions that read and check the stack launch files' arguments.

Plain ``launch.Substitution`` subclasses (and one ``launch.Action``), evaluated when the
launch runs: typed, range-checked numbers (:class:`IntArgument`, :class:`FloatArgument`),
the controller checked against the registries (:class:`ControllerArgument`) and its
parameters (:class:`ControllerParams`), ``record:=true`` needing ``bag``
(:class:`RecordBag`), counts and flags of boolean arguments (:class:`TrueCount`), the
live-learning explorers' namespaces, seeds and result files; and :class:`CheckArguments`,
which performs the checks before any node starts. A bad argument raises ValueError with one
line naming it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from launch import Action, LaunchContext, Substitution
from launch.substitutions import LaunchConfiguration

from rpl_base_controllers.registry import controllers_for
from rpl_interfaces.output_files import os_reason, probe_write
from rpl_interfaces.params import yaml_float, yaml_string
from rpl_interfaces.trainer_files import check_trainer_files
from rpl_sim_bridge.bridge_config import LOCKSTEP, MAX_SEED

MAX_EXPLORERS = 4
EXPLORER_SEED_STRIDE = 1_000_000  # explorer i runs sim seeds seed + (i + 1) * stride ...
# Launch arguments of the stack and learning launch files that a controller parameter of
# the same name cannot be (such a parameter is then settable as a ROS parameter only).
RESERVED_ARGUMENTS = (
    'controller',
    'controller_params',
    'model_path',
    'allow_model_mismatch',
    'residual_gain',
    'residual_gain_ramp_s',
    'episodes',
    'mode',
    'seed',
    'namespace',
    'monitor',
    'results',
    'command_timeout',
    'max_rate',
    'record',
    'bag',
    'explorers',
    'explore_noise',
    'explore_random',
    'bags',
    'checkpoint',
    'init_from',
    'train_overrides',
    'updates_per_step',
    'export_every_updates',
    'task',
)


def _flag(context: LaunchContext, name: str) -> bool:
    return LaunchConfiguration(name).perform(context).strip().lower() in ('true', '1')


def _needs_flag(context: LaunchContext, name: str, value: str, flag: str) -> None:
    """ValueError when the launch argument ``name`` is given but ``flag:=true`` is not: the
    node that would write it does not run, and the file was never written without a word."""
    if value.strip() and not _flag(context, flag):
        raise ValueError(
            f'launch argument {name}:={value!r} is written only with {flag}:=true; add '
            f'{flag}:=true (or leave out {name}:=)'
        )


class TrueCount(Substitution):
    """How many of the named boolean launch arguments are true, plus ``base`` (as text);
    with ``as_flag`` 'true' if any is true, else 'false' (for conditions)."""

    def __init__(self, names: tuple[str, ...], base: int = 0, as_flag: bool = False) -> None:
        super().__init__()
        self._names = names
        self._base, self._as_flag = base, as_flag

    def perform(self, context: LaunchContext) -> str:
        n = sum(_flag(context, name) for name in self._names)
        if self._as_flag:
            return 'true' if n else 'false'
        return str(self._base + n)

    def describe(self) -> str:
        return f'TrueCount({list(self._names)}, base={self._base}, as_flag={self._as_flag})'


class Text(Substitution):
    """A string parameter's value, quoted so that YAML keeps it a string: launch_ros (and
    ``rpl launch``) read substituted parameter text as YAML, so ``bag:=20241205``,
    ``results:=yes`` or ``model_path:=on`` reached the node as an integer or a boolean and
    the node refused its type after the stack had started."""

    def __init__(self, inner: Substitution) -> None:
        super().__init__()
        self._inner = inner

    def perform(self, context: LaunchContext) -> str:
        return yaml_string(self._inner.perform(context))

    def describe(self) -> str:
        return f'Text({self._inner.describe()})'


class FloatArgument(Substitution):
    """A numeric launch argument as float text ('1' -> '1.0', '1e-5' -> '1.0e-05'), so that
    a double parameter never receives an integer or a string; outside ``[low, high]`` or
    not a number: ValueError."""

    def __init__(self, name: str, low: float = -float('inf'), high: float = float('inf')) -> None:
        super().__init__()
        self._name, self._low, self._high = name, low, high

    def perform(self, context: LaunchContext) -> str:
        text = LaunchConfiguration(self._name).perform(context)
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f'launch argument {self._name}:={text!r} is not a number') from None
        if not self._low <= value <= self._high:
            raise ValueError(
                f'launch argument {self._name}:={text!r} is outside [{self._low}, {self._high}]'
            )
        return yaml_float(value)

    def describe(self) -> str:
        return f'Float({self._name!r})'


class LockstepRate(FloatArgument):
    """The ``max_rate`` launch argument (the sim bridge's ``lockstep_max_rate_hz``): a cap
    given with ``mode:=realtime`` is refused, as realtime steps at the sim bridge's own
    ``rate_hz`` (it was ignored without a word: 25 Hz where 5 were asked for)."""

    def __init__(self) -> None:
        super().__init__('max_rate', 0.0, 10000.0)

    def perform(self, context: LaunchContext) -> str:
        text = super().perform(context)
        if float(text) > 0 and Lockstep().perform(context) != 'true':
            raise ValueError(
                f'launch argument max_rate:={LaunchConfiguration("max_rate").perform(context)!r}'
                f' caps lockstep only; mode:={LaunchConfiguration("mode").perform(context)} '
                "steps at the sim bridge's rate_hz (config/sim_bridge.yaml)"
            )
        return text

    def describe(self) -> str:
        return 'LockstepRate()'


class IntArgument(Substitution):
    """An integer launch argument as canonical text ('007' -> '7'); not an integer or
    outside ``[low, high]``: ValueError (one line, before any node gets a bad parameter)."""

    def __init__(self, name: str, low: int, high: int) -> None:
        super().__init__()
        self._name, self._low, self._high = name, low, high

    def perform(self, context: LaunchContext) -> str:
        text = LaunchConfiguration(self._name).perform(context)
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(
                f'launch argument {self._name}:={text!r} is not an integer '
                f'(expected {self._low}..{self._high})'
            ) from None
        if not self._low <= value <= self._high:
            raise ValueError(
                f'launch argument {self._name}:={text!r} is outside {self._low}..{self._high}'
            )
        return str(value)

    def describe(self) -> str:
        return f'Int({self._name!r})'


def _known_tasks() -> list[str]:
    from rpl_sim_bridge.tasks import available_tasks

    return available_tasks()


def _is_external(context: LaunchContext) -> bool:
    from rpl_base_controllers.registry import EXTERNAL_CONTROLLER

    return LaunchConfiguration('controller').perform(context).strip() == EXTERNAL_CONTROLLER


class ExternalController(Substitution):
    """'true' if the ``controller`` launch argument is ``external`` (the stack then starts no
    controller node), else 'false' (for conditions)."""

    def perform(self, context: LaunchContext) -> str:
        return 'true' if _is_external(context) else 'false'

    def describe(self) -> str:
        return 'ExternalController()'


class ControllerArgument(Substitution):
    """The ``controller`` launch argument, checked against the controller registry: a
    registered controller that suits ``task`` (registered with the sim bridge's task
    registry), else ValueError listing the controllers for the task. With
    ``external_allowed`` (the stack launches) it may also be ``external``: the user's own
    node publishes base_action; live learning runs the controller in its trainer, so there
    it must be registered."""

    def __init__(self, task: str, external_allowed: bool = False) -> None:
        super().__init__()
        self._task = task
        self._external_allowed = external_allowed

    def perform(self, context: LaunchContext) -> str:
        from rpl_base_controllers.registry import UnknownControllerError, controller_info

        tasks = _known_tasks()
        if self._task not in tasks:
            raise ValueError(f'task {self._task!r} is not registered; known tasks: {tasks}')
        name = LaunchConfiguration('controller').perform(context)
        known = controllers_for(self._task)
        if _is_external(context):
            if self._external_allowed:
                return name.strip()
            raise ValueError(
                'launch argument controller:=external: live learning runs the base '
                'controller in its trainer too, so it must be a registered one (a plug-in, '
                f'README "Your own controller and robot"); controllers for task '
                f'{self._task}: {known}'
            )
        try:
            suits = controller_info(name).tasks
        except UnknownControllerError:
            raise ValueError(
                f'launch argument controller:={name!r} is not a registered controller; '
                f'controllers for task {self._task}: {known}'
            ) from None
        if self._task not in suits:
            raise ValueError(
                f'launch argument controller:={name!r} is meant for tasks {list(suits)}, not '
                f'{self._task}; controllers for task {self._task}: {known}'
            )
        return name

    def describe(self) -> str:
        return f'Controller(task={self._task!r})'


def controller_params_for(task: str) -> dict[str, Any]:
    """Parameters of the controllers that suit ``task``: name -> the first such parameter
    (by controller name); each is a launch argument of the task's launch files."""
    from rpl_base_controllers.registry import controller_info

    params: dict[str, Any] = {}
    for controller in controllers_for(task):
        for param in controller_info(controller).params:
            params.setdefault(param.name, param)
    return params


class ControllerParams(Substitution):
    """The controller node's ``controller_params``: the controller-parameter launch arguments
    that are set (``carry_gain:=50``), as ``NAME=VALUE,...`` typed and range-checked for the
    chosen controller, else ValueError naming the argument (the controller has no such
    parameter, a bad value). Unset ones ('') are left out: the node keeps its parameter
    files' value or the controller's registered default."""

    def __init__(self, task: str) -> None:
        super().__init__()
        self._task = task

    def perform(self, context: LaunchContext) -> str:
        from rpl_base_controllers.registry import (
            controller_config,
            controller_info,
            params_from_text,
            parse_value,
        )

        controller = LaunchConfiguration('controller').perform(context)
        external = _is_external(context)
        params = {} if external else {p.name: p for p in controller_info(controller).params}
        values: dict[str, Any] = {}
        for name in controller_params_for(self._task):
            if name in RESERVED_ARGUMENTS:
                continue
            text = LaunchConfiguration(name).perform(context).strip()
            if not text:
                continue
            if external:
                raise ValueError(
                    f'launch argument {name}:={text!r}: controller:=external starts no '
                    'controller node; set the parameter on your own node'
                )
            if name not in params:
                raise ValueError(
                    f'launch argument {name}:={text!r}: controller {controller!r} has no '
                    f'parameter {name!r}; its parameters: {sorted(params)}'
                )
            try:
                values[name] = parse_value(params[name], text)
                controller_config(controller, self._task, **{name: values[name]})
            except ValueError as exc:
                raise ValueError(f'launch argument {name}:={text!r}: {exc}') from None
        text = LaunchConfiguration('controller_params').perform(context).strip()
        if text and external:
            raise ValueError(
                f'launch argument controller_params:={text!r}: controller:=external starts no '
                'controller node; set the parameters on your own node'
            )
        if text:
            try:
                given = params_from_text(controller, text)
                controller_config(controller, self._task, **given)
            except ValueError as exc:
                raise ValueError(f'launch argument controller_params:={text!r}: {exc}') from None
            if twice := sorted(set(given) & set(values)):
                raise ValueError(
                    f'launch argument controller_params:={text!r} sets {twice} again: give '
                    'each parameter once'
                )
            values.update(given)
        if len(values) > 1:  # together: the relations no one of them breaks alone
            try:
                controller_config(controller, self._task, **values)
            except ValueError as exc:
                given = ' '.join(f'{name}:={value}' for name, value in values.items())
                raise ValueError(f'launch arguments {given}: {exc}') from None
        return ','.join(f'{name}={value}' for name, value in values.items())

    def describe(self) -> str:
        return f'ControllerParams(task={self._task!r})'


class RecordBag(Substitution):
    """The ``bag`` launch argument; ``record:=true`` needs a new one, else ValueError (the
    recorder would fail only once the other nodes had started)."""

    def perform(self, context: LaunchContext) -> str:
        bag = LaunchConfiguration('bag').perform(context)
        _needs_flag(context, 'bag', bag, 'record')
        if _flag(context, 'record') and not bag.strip():
            raise ValueError('launch argument record:=true needs bag:=PATH (a new bag folder)')
        if _flag(context, 'record'):
            from rpl_bags.writer import existing_bag

            problem = existing_bag(bag)
            if problem:
                raise ValueError(f'launch argument bag:={bag!r}: {problem}')
            try:  # as `rpl bag record` checks it: the stack would run, then the recorder fail
                probe_write(os.path.join(bag, 'metadata.yaml'))
            except OSError as exc:
                raise ValueError(
                    f'launch argument bag:={bag!r} cannot be created: {os_reason(exc)}'
                ) from None
        return bag

    def describe(self) -> str:
        return 'RecordBag()'


class Lockstep(Substitution):
    """'true' if the ``mode`` launch argument is lockstep, else 'false' (a condition's text)."""

    def perform(self, context: LaunchContext) -> str:
        return 'true' if LaunchConfiguration('mode').perform(context) == LOCKSTEP else 'false'

    def describe(self) -> str:
        return 'Lockstep()'


class ModelGiven(Substitution):
    """'true' if the ``model_path`` launch argument names a model, else 'false': the sim
    bridge's ``expect_model`` (a finished run whose applied commands came from the model
    less than half the time fails)."""

    def perform(self, context: LaunchContext) -> str:
        return 'true' if LaunchConfiguration('model_path').perform(context).strip() else 'false'

    def describe(self) -> str:
        return 'ModelGiven()'


class NewResultsFile(Substitution):
    """The ``results`` launch argument of a stack launch (the episode monitor's JSON file);
    with ``monitor:=true`` it must be a new file, else ValueError: results, like bags, are
    never written over, and a folder there would stop the monitor after start-up."""

    def perform(self, context: LaunchContext) -> str:
        path = LaunchConfiguration('results').perform(context)
        _needs_flag(context, 'results', path, 'monitor')
        if _flag(context, 'monitor') and path.strip():
            bag = LaunchConfiguration('bag').perform(context).strip()
            if _flag(context, 'record') and bag and (_within(path, bag) or _within(bag, path)):
                raise ValueError(
                    f'launch argument results:={path!r} and bag:={bag!r} overlap (the recorder '
                    'makes the bag folder, the monitor the results file): give each a path of '
                    'its own'
                )
            if os.path.isdir(path):
                raise ValueError(f'launch argument results:={path!r} is a folder; give a new file')
            if os.path.lexists(path):
                raise ValueError(
                    f'launch argument results:={path!r} exists (results are never written over; '
                    'give a new file)'
                )
            try:  # the monitor would die after start, its results never written
                probe_write(path)
            except OSError as exc:
                raise ValueError(
                    f'launch argument results:={path!r} cannot be written: {os_reason(exc)}'
                ) from None
        return path

    def describe(self) -> str:
        return 'NewResultsFile()'


def _within(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies inside it (links resolved as far as they exist)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class CheckArguments(Action):
    """Performs every checking substitution before any node starts, so that a bad launch
    argument ends the launch with one line and a non-zero exit (under ``ros2 launch`` the
    ValueError is its 'Caught exception in launch' line, exit 1; under ``rpl launch`` exit 2)
    and no node is ever started with it."""

    def __init__(self, checks: Sequence[Substitution]) -> None:
        super().__init__()
        self._checks = list(checks)

    def execute(self, context: LaunchContext) -> None:
        for check in self._checks:
            check.perform(context)


def _explorer_count(context: LaunchContext) -> int:
    text = LaunchConfiguration('explorers').perform(context)
    try:
        count = int(text)
    except ValueError:
        count = -1
    if not 0 <= count <= MAX_EXPLORERS:
        raise ValueError(f'launch argument explorers:={text!r} must be 0..{MAX_EXPLORERS}')
    return count


class ExplorerActive(Substitution):
    """'true' when explorer ``index`` runs (``index < explorers``) and every boolean launch
    argument in ``also`` is true, else 'false' (for conditions)."""

    def __init__(self, index: int, also: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._index, self._also = index, also

    def perform(self, context: LaunchContext) -> str:
        active = self._index < _explorer_count(context)
        return 'true' if active and all(_flag(context, n) for n in self._also) else 'false'

    def describe(self) -> str:
        return f'ExplorerActive({self._index}, also={list(self._also)})'


def _explorer_namespace_text(context: LaunchContext, index: int) -> str:
    return LaunchConfiguration('namespace').perform(context).rstrip('/') + f'/explore_{index}'


class ExplorerNamespace(Substitution):
    """Namespace of explorer ``index``: ``<namespace>/explore_<index>``."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self._index = index

    def perform(self, context: LaunchContext) -> str:
        return _explorer_namespace_text(context, self._index)

    def describe(self) -> str:
        return f'ExplorerNamespace({self._index})'


class StackNamespaces(Substitution):
    """Comma-separated namespaces of the watched stack and of every running explorer."""

    def perform(self, context: LaunchContext) -> str:
        namespaces = [LaunchConfiguration('namespace').perform(context)]
        namespaces += [
            _explorer_namespace_text(context, i) for i in range(_explorer_count(context))
        ]
        return ','.join(namespaces)

    def describe(self) -> str:
        return 'StackNamespaces()'


class StackSeed(Substitution):
    """``seed + offset`` as text (the seed of an explorer's sim and exploration noise)."""

    def __init__(self, offset: int) -> None:
        super().__init__()
        self._offset = offset

    def perform(self, context: LaunchContext) -> str:
        return str(int(learn_seed().perform(context)) + self._offset)

    def describe(self) -> str:
        return f'StackSeed(seed + {self._offset})'


def stack_name(namespace: str) -> str:
    """File-name form of a stack's namespace: '/rpl/explore_0' -> 'rpl_explore_0'."""
    return namespace.strip('/').replace('/', '_') or 'root'


class ResultsFile(Substitution):
    """``<results>/<stack name>.json`` for the stack in ``namespace``; '' when results is ''."""

    def __init__(self, namespace: Substitution) -> None:
        super().__init__()
        self._namespace = namespace

    def perform(self, context: LaunchContext) -> str:
        folder = LaunchConfiguration('results').perform(context)
        if not folder:
            return ''
        return os.path.join(folder, stack_name(self._namespace.perform(context)) + '.json')

    def describe(self) -> str:
        return f'ResultsFile({self._namespace.describe()})'


class NewLearnResults(Substitution):
    """The ``results`` launch argument of a learning launch: with ``monitor:=true``, a
    folder where each running stack's monitor writes ``<stack name>.json``; ValueError if it
    is a file or one of those files exists (results are never written over)."""

    def perform(self, context: LaunchContext) -> str:
        folder = LaunchConfiguration('results').perform(context)
        _needs_flag(context, 'results', folder, 'monitor')
        if not (_flag(context, 'monitor') and folder.strip()):
            return folder
        if os.path.lexists(folder) and not os.path.isdir(folder):
            raise ValueError(
                f"launch argument results:={folder!r} is a file; give a folder for the stacks' "
                'result files'
            )
        for namespace in StackNamespaces().perform(context).split(','):
            path = os.path.join(folder, stack_name(namespace) + '.json')
            if os.path.lexists(path):
                raise ValueError(
                    f'launch argument results:={folder!r}: {path!r} exists (results are never '
                    'written over; give a new folder)'
                )
        return folder

    def describe(self) -> str:
        return 'NewLearnResults()'


NO_CHECKPOINT = 'none'  # checkpoint:=none: the learning launch's trainer keeps no checkpoint


class LearnerCheckpoint(Substitution):
    """The learning launch's trainer checkpoint: ``checkpoint`` as given; when not given,
    the file beside ``model_path`` named after it (``runs/live/actor.onnx`` ->
    ``runs/live/actor.ckpt``), so that a Ctrl-C keeps the learner and the same command
    resumes it (without one the learner was lost at the stop, and the same command was then
    refused: a new learner would write over the model); ``none``: no checkpoint."""

    def perform(self, context: LaunchContext) -> str:
        given = LaunchConfiguration('checkpoint').perform(context).strip()
        if given.lower() == NO_CHECKPOINT:
            return ''
        if given:
            return given
        model = LaunchConfiguration('model_path').perform(context).strip()
        return f'{os.path.splitext(model)[0]}.ckpt' if model else ''

    def describe(self) -> str:
        return 'LearnerCheckpoint()'


class TrainerFiles(Substitution):
    """The trainer's file checks (:func:`rpl_interfaces.trainer_files.check_trainer_files`)
    on the learning launch's ``model_path``, ``checkpoint``, ``init_from`` and ``bags``, made
    before any node starts: the trainer refused them only once every stack was up."""

    def perform(self, context: LaunchContext) -> str:
        def given(name: str) -> str:
            return LaunchConfiguration(name).perform(context).strip()

        bags = [p.strip() for p in given('bags').split(',') if p.strip()]
        try:
            checkpoint = LearnerCheckpoint().perform(context)
            check_trainer_files(given('model_path'), checkpoint, given('init_from'), bags)
        except ValueError as exc:
            raise ValueError(f'the trainer would refuse its launch arguments: {exc}') from None
        return ''

    def describe(self) -> str:
        return 'TrainerFiles()'


def learn_seed() -> IntArgument:
    # The explorers' sims run seed + (i + 1) * stride: every one must stay in range.
    return IntArgument('seed', 0, MAX_SEED - MAX_EXPLORERS * EXPLORER_SEED_STRIDE)
