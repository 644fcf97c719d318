"""Run a ROS 2 Python launch file without a full ROS install: plan, then supervise.

Two halves:

* Planning (:func:`plan_launch_file`): load a standard ``launch_ros`` file with the stand-in
  modules of :mod:`rpl_bringup.launch_shim` (only where the real ``launch`` packages are
  missing), evaluate it with the user's ``name:=value`` arguments and get one
  :class:`~rpl_bringup.launch_shim.ProcessPlan` per process: its command line, whether it
  is required (``on_exit=Shutdown()``) or respawns.
* Supervision (:class:`rpl_bringup.supervisor.Supervisor`): start every plan as its own
  process group, prefix each output line with the process name, restart respawning
  processes, end the launch when a required process exits, and on Ctrl-C / SIGTERM stop
  every child with SIGINT, then SIGTERM, then SIGKILL, so that no process outlives it.

When the real ``launch`` package is installed and the ament index resolves the packages (a
colcon install), :func:`run_launch_file` hands the file to ``launch.LaunchService`` instead
(the same as ``ros2 launch``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import os
import pathlib
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from rpl_bringup import launch_shim
from rpl_bringup.launch_shim import LaunchContext, LaunchError, ProcessPlan
from rpl_bringup.launch_shim.sources import load_python_launch_file
from rpl_bringup.supervisor import PREFIX, Supervisor

DDS_PROFILE = 'fastdds_loopback.xml'


# --- arguments, packages, executables -------------------------------------------------


def parse_launch_arguments(tokens: Iterable[str]) -> dict[str, str]:
    """Parse ``name:=value`` launch arguments.

    Raises:
        LaunchError: A token without ``:=`` or with an empty name.
    """
    arguments: dict[str, str] = {}
    for token in tokens:
        name, sep, value = token.partition(':=')
        if not sep or not name.strip():
            raise LaunchError(f'launch arguments look like name:=value, got {token!r}')
        arguments[name.strip()] = value
    return arguments


def _checkout_root(package_dir: pathlib.Path) -> pathlib.Path | None:
    # A source checkout keeps launch/ and config/ at the top, above src/<package>/<package>
    # (src/rpl_bringup links to them: the folder they resolve to is the answer).
    for candidate in [package_dir, *list(package_dir.parents)[:3]]:
        launch, config = candidate / 'launch', candidate / 'config'
        if (
            launch.is_dir()
            and config.is_dir()
            and launch.resolve().parent == config.resolve().parent
        ):
            return launch.resolve().parent
    return None


def find_package_share(package: str) -> str:
    """Share directory of a ROS package, wherever it is installed.

    Looks in order at: the ament index (``AMENT_PREFIX_PATH``, as ``ros2 launch`` does);
    ``<sys.prefix>/share/<package>`` (a plain pip install of an ament_python package); a
    source checkout (editable install): the repository root holding ``launch/`` and
    ``config/`` for rpl_bringup, else the folder with the package's ``package.xml``.

    Raises:
        LaunchError: The package is nowhere to be found.
    """
    if os.environ.get('AMENT_PREFIX_PATH'):
        with contextlib.suppress(ImportError, LookupError, ValueError, OSError):
            from ament_index_python.packages import get_package_share_directory

            return get_package_share_directory(package)
    share = pathlib.Path(sys.prefix) / 'share' / package
    if (share / 'package.xml').is_file():
        return str(share)
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is not None and spec.origin:
        package_root = pathlib.Path(spec.origin).resolve().parent.parent
        if package == 'rpl_bringup':
            root = _checkout_root(package_root)
            if root is not None:
                return str(root)
        if (package_root / 'package.xml').is_file():
            return str(package_root)
    raise LaunchError(
        f'package {package!r} not found: not in AMENT_PREFIX_PATH, not in '
        f'{sys.prefix}/share, and not importable from a source checkout '
        f'(install it with `pip install -e src/{package}`)'
    )


def resolve_executable(package: str, executable: str) -> list[str]:
    """Command prefix that runs ``executable`` of ``package``.

    Looks for ``<prefix>/lib/<package>/<executable>`` (ament layout) in every
    ``AMENT_PREFIX_PATH`` entry and ``sys.prefix``, then next to ``sys.executable`` (pip
    console scripts), then on ``PATH``; finally runs the module ``<package>.<executable>``
    with this Python when there is one.

    Raises:
        LaunchError: Nothing runs it (the message lists where it looked).
    """
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    candidates = [pathlib.Path(p) / 'lib' / package / executable for p in prefixes]
    candidates.append(pathlib.Path(sys.prefix) / 'lib' / package / executable)
    candidates.append(pathlib.Path(sys.executable).parent / executable)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return [str(path)]
    found = shutil.which(executable)
    if found:
        return [found]
    module = f'{package}.{executable}'
    with contextlib.suppress(ImportError, ValueError):
        if package.isidentifier() and importlib.util.find_spec(module) is not None:
            return [sys.executable, '-m', module]
    looked = ', '.join(str(c.parent) for c in candidates)
    raise LaunchError(
        f'executable {executable!r} of package {package!r} not found (looked in {looked}, '
        f'PATH, and for module {module}); is the package installed?'
    )


def apply_dds_defaults(env: dict[str, str] | Any) -> None:
    """Keep DDS on this machine unless the user chose a Fast DDS profile.

    If ``FASTDDS_DEFAULT_PROFILES_FILE`` is unset, point it at rpl_bringup's
    ``config/fastdds_loopback.xml`` (shared memory + UDP on 127.0.0.1) and default
    ``ROS_AUTOMATIC_DISCOVERY_RANGE`` to ``LOCALHOST``. Set to a file, it is the user's
    profile; set empty (``FASTDDS_DEFAULT_PROFILES_FILE=``), it asks for no profile at all:
    it is removed and Fast DDS runs on its own defaults (a robot network). Either way
    nothing else is changed. Changes ``env`` in place.
    """
    if 'FASTDDS_DEFAULT_PROFILES_FILE' in env:
        # An empty value was read as unset: the loopback profile came back, and nodes on
        # other machines never matched.
        if not env['FASTDDS_DEFAULT_PROFILES_FILE'].strip():
            del env['FASTDDS_DEFAULT_PROFILES_FILE']
        return
    with contextlib.suppress(LaunchError):
        profile = pathlib.Path(find_package_share('rpl_bringup')) / 'config' / DDS_PROFILE
        if profile.is_file():
            env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(profile)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')


def locate_launch_file(package: str | None, file_name: str, own_runner: bool = False) -> str:
    """Path of a launch file: ``file_name`` itself, or ``<share of package>/launch/<file>``.

    ``own_runner``: this project's runner will run it even where the real ``launch`` is
    installed, so an XML or YAML file is refused there too.

    Raises:
        LaunchError: The file does not exist (the message lists the package's launch files),
            or it is XML / YAML and the real ``launch`` will not run it.
    """
    if file_name.endswith(('.xml', '.yaml', '.yml')) and (
        own_runner or not launch_shim.is_real('launch')
    ):
        without = ', without --own-runner' if own_runner else ''
        raise LaunchError(
            f"launch file {file_name!r}: XML and YAML launch files need ROS 2's launch "
            f"package{without}; rpl launch's own runner runs Python launch files (*.launch.py)"
        )
    if package is None:
        if not os.path.isfile(file_name):
            raise LaunchError(f'launch file {file_name!r} does not exist')
        return os.path.abspath(file_name)
    launch_dir = pathlib.Path(find_package_share(package)) / 'launch'
    path = launch_dir / file_name
    if not path.is_file():
        raise LaunchError(
            f'package {package!r} has no launch file {file_name!r} in {launch_dir}; known: '
            f'{launch_files(package)}'
        )
    return str(path)


def launch_files(package: str) -> list[str]:
    """Names of the Python launch files in ``<share of package>/launch`` (sorted)."""
    launch_dir = pathlib.Path(find_package_share(package)) / 'launch'
    return sorted(p.name for p in launch_dir.glob('*.launch.py'))


# --- planning ---------------------------------------------------------------------------


def load_launch_description(path: str, force_shim: bool = False) -> Any:
    """Import a launch file and call its ``generate_launch_description()``.

    The stand-in ``launch`` modules are installed first where the real ones are missing
    (everywhere with ``force_shim``).

    Raises:
        LaunchError: The file has no ``generate_launch_description`` function.
    """
    if launch_shim.install(force=force_shim):
        # A helper the launch files import may be cached with the real launch modules.
        for name in _CACHED_HELPERS:
            sys.modules.pop(name, None)
    return load_python_launch_file(path)


@dataclasses.dataclass(frozen=True)
class LaunchArgumentInfo:
    """A declared launch argument, for ``--show-args``."""

    name: str
    default: str | None
    description: str
    choices: list[str] | None


def describe_launch_arguments(path: str) -> list[LaunchArgumentInfo]:
    """The launch arguments a launch file declares (name, default, description, choices)."""
    description = load_launch_description(path, force_shim=True)
    context = LaunchContext(find_package_share=find_package_share)
    infos = []
    for arg in description.get_launch_arguments(context):
        default = None
        if arg.default_value is not None:
            try:
                default = ''.join(s.perform(context) for s in arg.default_value)
            except LaunchError:
                default = ''.join(s.describe() for s in arg.default_value)
        infos.append(LaunchArgumentInfo(arg.name, default, arg.description, arg.choices))
    return infos


def plan_launch_file(
    path: str,
    arguments: Mapping[str, str],
    *,
    find_share: Callable[[str], str] = find_package_share,
    resolve: Callable[[str, str], Sequence[str]] = resolve_executable,
    force_shim: bool = False,
) -> list[ProcessPlan]:
    """Evaluate a launch file into the processes it starts.

    Args:
        path: Launch file (``*.launch.py``).
        arguments: ``name -> value`` launch arguments.
        find_share: Package share resolver (``FindPackageShare``).
        resolve: Executable resolver for nodes.
        force_shim: Evaluate with the stand-in modules even where the real ``launch`` is
            installed.

    Raises:
        LaunchError: Bad or unknown arguments, missing files or executables.
    """
    description = load_launch_description(path, force_shim)
    if not isinstance(description, launch_shim.LaunchDescription):
        raise LaunchError(
            f'{path!r}: generate_launch_description() returned {description!r}, not a '
            'LaunchDescription of the stand-in modules (is the real launch installed?)'
        )
    context = LaunchContext(arguments, find_package_share=find_share, resolve_executable=resolve)
    context.launch_file_dir = os.path.dirname(os.path.abspath(path))
    try:
        description.visit(context)
    except LaunchError:
        raise
    except ValueError as exc:
        # A launch file's own substitution rejecting a value (as `ros2 launch` reports any
        # exception in the launch: one line, no traceback).
        raise LaunchError(f'{pathlib.Path(path).name}: {exc}') from exc
    # Refused: a name nothing declares and nothing reads (a typo); one read through
    # LaunchConfiguration(name, default=...) without a declaration is used, as upstream.
    unknown = sorted(
        set(arguments) - set(context.declared_arguments) - context.read_configurations
    )
    if unknown:
        declared = ', '.join(sorted(context.declared_arguments)) or 'none'
        raise LaunchError(
            f'unknown launch argument(s) {unknown} for {pathlib.Path(path).name}; '
            f'it declares: {declared}'
        )
    return context.processes


# --- entry point ------------------------------------------------------------------------


def run_with_real_launch(path: str, arguments: Mapping[str, str]) -> int:
    """Hand the file to the real ``launch.LaunchService`` (as ``ros2 launch`` does)."""
    launch = importlib.import_module('launch')
    actions = importlib.import_module('launch.actions')
    sources = importlib.import_module('launch.launch_description_sources')
    argv = [f'{k}:={v}' for k, v in arguments.items()]
    service = launch.LaunchService(argv=argv)
    include = actions.IncludeLaunchDescription(
        sources.PythonLaunchDescriptionSource(path), launch_arguments=list(arguments.items())
    )
    service.include_launch_description(launch.LaunchDescription([include]))
    return service.run()


_SHIMMED = ('launch', 'launch_ros')
# Launch-file helpers bound to launch classes (every rpl_bringup module importing launch).
_CACHED_HELPERS = (
    'rpl_bringup.stack_launch',
    'rpl_bringup.stack_arguments',
    'rpl_bringup.stack_exits',
    'rpl_bringup.stack_substitutions',
)


@contextlib.contextmanager
def _stand_in_modules() -> Iterator[None]:
    """Evaluate with the stand-in modules, then put ``sys.modules`` back as it was, so that
    the real ``launch`` still imports cleanly afterwards."""

    def ours(name: str) -> bool:
        return name in _CACHED_HELPERS or any(
            name == top or name.startswith(top + '.') for top in _SHIMMED
        )

    saved = {name: module for name, module in sys.modules.items() if ours(name)}
    try:
        yield
    finally:
        for name in [n for n in sys.modules if ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)


def _ament_prefix(package: str) -> str:
    from ament_index_python.packages import get_package_prefix

    return get_package_prefix(package)


def real_launch_unusable(path: str, arguments: Mapping[str, str]) -> str | None:
    """Why the real ``launch`` cannot run this file here, or None when it can.

    The real ``launch`` finds packages only through the ament index: it needs
    ``AMENT_PREFIX_PATH``, rpl_bringup registered there, and every node executable the
    file starts in ``<prefix>/lib/<package>/`` (a colcon install; a pip install has none
    of these).
    """
    if not launch_shim.is_real('launch') or not launch_shim.is_real('launch_ros'):
        return 'the real launch / launch_ros packages are not installed'
    if not os.environ.get('AMENT_PREFIX_PATH'):
        return 'AMENT_PREFIX_PATH is not set (no ament index: a pip install)'
    try:
        _ament_prefix('rpl_bringup')
    except ImportError:
        return 'ament_index_python is not installed'
    except (LookupError, ValueError, OSError):
        return 'package rpl_bringup is not in the ament index (AMENT_PREFIX_PATH)'
    try:
        with _stand_in_modules():
            plans = plan_launch_file(path, arguments, resolve=lambda p, e: [e], force_shim=True)
    except Exception:  # noqa: BLE001  the real launch evaluates it and reports for itself
        return None
    for plan in plans:
        if plan.node is None:
            continue
        package, executable = plan.node.package, plan.node.executable
        try:
            exe = pathlib.Path(_ament_prefix(package)) / 'lib' / package / executable
        except (LookupError, ValueError, OSError):
            return f'package {package} is not in the ament index (AMENT_PREFIX_PATH)'
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            return f'{exe} does not exist (node {plan.name})'
    return None


def run_launch_file(
    path: str,
    arguments: Mapping[str, str],
    *,
    own_runner: bool = False,
    say: Callable[[str], None] | None = None,
    **supervisor_options: Any,
) -> int:
    """Run a launch file: with the real ``launch`` where it can run it, else plan + supervise.

    The real ``launch`` is used when it is installed and the ament index resolves the
    packages (see :func:`real_launch_unusable`); where it is installed but cannot, one line
    says why and this project's runner runs the file. Applies :func:`apply_dds_defaults` to
    ``os.environ`` first.

    Args:
        path: Launch file.
        arguments: ``name -> value`` launch arguments.
        own_runner: Use this project's runner even where the real ``launch`` could run it.
        say: Sink of that one line (default: print to stdout with the runner's prefix).
        **supervisor_options: Passed to :class:`~rpl_bringup.supervisor.Supervisor`.

    Raises:
        LaunchError: The file cannot be evaluated with these arguments.
    """
    apply_dds_defaults(os.environ)
    if launch_shim.is_real('launch') and not own_runner:
        why_not = real_launch_unusable(path, arguments)
        if why_not is None:
            return run_with_real_launch(path, arguments)
        (say or _say)(f'not using the installed launch package: {why_not}; running the file here')
    plans = plan_launch_file(path, arguments, force_shim=True)
    if not plans:
        raise LaunchError(f'{pathlib.Path(path).name} starts no processes')
    return Supervisor(plans, **supervisor_options).run()


def _say(message: str) -> None:
    print(f'{PREFIX} {message}', flush=True)
