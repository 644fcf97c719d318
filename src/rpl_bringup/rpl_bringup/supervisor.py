"""Process supervision of a launch: start, relay output, respawn, stop without orphans.

Pure Python (subprocess, selectors, signals); no ROS. :class:`Supervisor` runs a list of
:class:`~rpl_bringup.launch_shim.ProcessPlan` with the rules of ``ros2 launch``: required
processes end the launch, respawning ones are restarted, and stopping escalates from
SIGINT to SIGTERM to SIGKILL, sent to each child's whole process group.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from rpl_bringup.launch_shim import LaunchError, ProcessPlan
from rpl_bringup.launch_shim.core import ProcessExited

PREFIX = '[rpl launch]'
# A respawned process that dies again within this many seconds of its restart is in a
# crash loop (e.g. a bad parameter): the launch ends with an error naming it.
CRASH_LOOP_S = 5.0


def _parent_death_signal() -> Callable[[], None] | None:
    # Linux: ask the kernel to SIGTERM a child when the runner dies (even by SIGKILL),
    # the last line of defence against orphans.
    if not sys.platform.startswith('linux'):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the runner died between fork and prctl
            os._exit(1)

    return preexec


class _Child:
    """Run-time state of one plan."""

    def __init__(self, plan: ProcessPlan) -> None:
        self.plan = plan
        self.popen: subprocess.Popen[bytes] | None = None
        self.pending = b''
        self.restart_at: float | None = None
        self.started_at = 0.0
        self.starts = 0
        self.log: IO[str] | None = None
        self.signalled = False  # the runner sent it a stop signal
        self.held: list[bytes] | None = None  # a traceback being held back while stopping
        self.interrupted = False  # the stop's KeyboardInterrupt ended it (still starting)

    @property
    def alive(self) -> bool:
        return self.popen is not None


# Exit codes of a node that says the stop cut its run short (128 + SIGINT / SIGTERM).
_STOPPED_CODES = (128 + signal.SIGINT, 128 + signal.SIGTERM)


class Supervisor:
    """Start processes, relay their output and apply the launch's exit rules.

    * A required process (``on_exit=Shutdown()``) that exits with 0 ends the launch with
      0; one that fails ends it with its code (1 when it died by a signal), naming it.
    * A process with an ``on_exit`` callable (:attr:`ProcessPlan.on_exit`) has it called
      first on every exit: if it raises, the launch ends with the exit's code (1 when that
      is not positive) and the exception's message; if it asks for ``Shutdown()``, the
      launch ends as for a required process.
    * A respawning process is restarted ``respawn_delay`` seconds after it exits; if a
      restarted one dies again within ``crash_loop_s`` seconds of its restart, the launch
      ends with an error naming it (a crash loop, e.g. a bad parameter).
    * Any other exit is reported; when nothing is left running the launch ends (0 if
      every process exited with 0, else 1).
    * While the launch stops, a process exiting with a positive code (it failed its last
      work: a bag it could not close, a last checkpoint it could not save; not 128 +
      SIGINT / SIGTERM, a node saying the stop cut its run short) makes a launch that would
      end with 0 end with that code; so does a process that failed before the stop.
    * SIGINT / SIGTERM to the runner stop every child (exit code 128 + signal number);
      stopping is SIGINT, then SIGTERM after ``sigint_timeout``, then SIGKILL after
      ``sigterm_timeout``, each sent to the child's whole process group. A Python child
      still importing when SIGINT reaches it prints a ``KeyboardInterrupt`` traceback;
      the runner drops such a traceback (it caused it) and says so in one line.

    Args:
        plans: Processes to run (unique names).
        env: Base environment of the children (default: ``os.environ``).
        write: Sink for output lines (default: print to stdout).
        log_dir: Where ``output='log'`` processes write ``<name>.log`` (default: a new
            temporary folder, announced).
        sigint_timeout: Seconds between SIGINT and SIGTERM when stopping.
        sigterm_timeout: Seconds between SIGTERM and SIGKILL when stopping.
        handle_signals: Install SIGINT/SIGTERM handlers (main thread only).
        crash_loop_s: A respawned process dying again within this many seconds of its
            restart ends the launch with an error.
    """

    def __init__(
        self,
        plans: Sequence[ProcessPlan],
        *,
        env: Mapping[str, str] | None = None,
        write: Callable[[str], None] | None = None,
        log_dir: str | None = None,
        sigint_timeout: float = 5.0,
        sigterm_timeout: float = 5.0,
        handle_signals: bool = True,
        crash_loop_s: float = CRASH_LOOP_S,
    ) -> None:
        names = [p.name for p in plans]
        if len(set(names)) != len(names):
            raise LaunchError(f'process names must be unique, got {names}')
        self.children = [_Child(p) for p in plans]
        self.env = dict(os.environ if env is None else env)
        self.write = write or _print_line
        self.log_dir = log_dir
        self.sigint_timeout = sigint_timeout
        self.sigterm_timeout = sigterm_timeout
        self.handle_signals = handle_signals
        self.crash_loop_s = crash_loop_s
        self.exit_code: int | None = None
        self._selector = selectors.DefaultSelector()
        self._groups: set[int] = set()
        self._stop_stage: int | None = None  # index into _STAGES once stopping
        self._stop_deadline = 0.0
        self._signals: list[int] = []
        self._interrupted = False  # a SIGINT / SIGTERM of the user reached this runner
        self._failed = False
        self._preexec = _parent_death_signal()

    _STAGES = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)

    # --- public -------------------------------------------------------------------------
    def pids(self) -> dict[str, int | None]:
        """Process id of every running child (None while it is not running)."""
        return {c.plan.name: (c.popen.pid if c.popen else None) for c in self.children}

    def start_counts(self) -> dict[str, int]:
        """How often each child was started (respawns included)."""
        return {c.plan.name: c.starts for c in self.children}

    def run(self) -> int:
        """Run until the launch ends; returns the launch's exit code."""
        previous = self._install_signal_handlers()
        try:
            for child in self.children:
                if self._stop_stage is None:  # a required process may fail to start
                    self._start(child)
            return self._loop()
        finally:
            self._kill_everything()
            self._restore_signal_handlers(previous)
            for child in self.children:
                if child.log is not None:
                    child.log.close()
            self._selector.close()

    # --- main loop ----------------------------------------------------------------------
    def _loop(self) -> int:
        while True:
            self._pump(0.05)
            now = time.monotonic()
            for child in self.children:
                if child.popen is not None and child.popen.poll() is not None:
                    self._on_exit(child, child.popen.returncode, now)
            while self._signals:
                self._on_signal(self._signals.pop(0), now)
            if self._stop_stage is not None:
                if not any(c.alive for c in self.children):
                    return self.exit_code if self.exit_code is not None else 0
                if now >= self._stop_deadline and not self._escalate(now):
                    stuck = [c.plan.name for c in self.children if c.alive]
                    self._say(f'{", ".join(stuck)} did not die after SIGKILL; giving up')
                    return self.exit_code if self.exit_code else 1
                continue
            for child in self.children:
                if child.restart_at is not None and now >= child.restart_at:
                    child.restart_at = None
                    self._start(child)
            if not any(c.alive or c.restart_at is not None for c in self.children):
                self.exit_code = 1 if self._failed else 0
                return self.exit_code

    def _say(self, message: str) -> None:
        self.write(f'{PREFIX} {message}')

    def _start(self, child: _Child) -> None:
        plan = child.plan
        env = {**self.env, **plan.env}
        env.setdefault('PYTHONUNBUFFERED', '1')
        env.setdefault('RCUTILS_COLORIZED_OUTPUT', '0')
        try:
            popen = subprocess.Popen(
                list(plan.cmd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=plan.cwd,
                start_new_session=True,  # own process group: signals reach its children too
                preexec_fn=self._preexec,
            )
        except OSError as exc:
            self._say(f'cannot start {plan.name}: {exc}')
            self._on_exit(child, 127, time.monotonic())
            return
        child.popen = popen
        child.starts += 1
        child.started_at = time.monotonic()
        child.signalled = False
        child.interrupted = False
        self._groups.add(popen.pid)
        assert popen.stdout is not None
        os.set_blocking(popen.stdout.fileno(), False)
        self._selector.register(popen.stdout, selectors.EVENT_READ, child)
        if plan.output == 'log' and child.log is None:
            if self.log_dir is None:
                self.log_dir = tempfile.mkdtemp(prefix='rpl_launch_')
            child.log = open(os.path.join(self.log_dir, f'{plan.name}.log'), 'a')  # noqa: SIM115
        where = f'; output in {child.log.name}' if child.log is not None else ''
        command = shlex.join(plan.cmd).replace('\n', '\\n')  # one line per message
        self._say(f'started {plan.name} (pid {popen.pid}): {command}{where}')

    def _on_exit(self, child: _Child, code: int, now: float) -> None:
        pid = 0
        if child.popen is not None:
            pid = child.popen.pid
            self._drain(child)
            child.popen = None
        name = child.plan.name
        verb = 'exited' if code == 0 else 'died'
        failure = code if code > 0 else 1
        if self._stop_stage is not None:
            if code > 0 and code not in _STOPPED_CODES and not child.interrupted:
                # A node that fails its last work while the launch stops (a bag it cannot
                # close, a last checkpoint or results file it cannot write): not a launch
                # that did what was asked, although it was ending with 0. 128 + SIGINT /
                # SIGTERM is a node saying the stop cut its run short: an answer, not this.
                if not self.exit_code:
                    self.exit_code = code
                self._say(
                    f'{name} failed while the launch stopped (code {code}): its last work '
                    f'did not complete; the launch ends with code {self.exit_code}'
                )
                return
            self._say(f'{name} stopped (code {code})')
            return
        if child.plan.on_exit is not None:
            event = ProcessExited(process_name=name, pid=pid, returncode=code, cmd=child.plan.cmd)
            try:
                verdict = child.plan.on_exit(event)
            except Exception as exc:  # the launch file's verdict: end the launch with an error
                said = str(exc)  # the callable's own sentence when it names the process
                if not said.startswith((f'{name} ', f'required process {name} ')):
                    said = f'{name} {verb} (code {code}): {said}'
                self._say(f'{said}; stopping the launch')
                self._begin_stop(failure, None, now)
                return
            for message in verdict.messages:
                self._say(message)
            if verdict.shutdown is not None:
                ended = 'finished' if code == 0 else 'died'
                self._say(f'{name} {ended} (code {code}); stopping the launch: {verdict.shutdown}')
                self._begin_stop(0 if code == 0 else failure, None, now)
                return
        if child.plan.required:
            if code == 0:
                self._say(f'{name} finished (code {code}); stopping the launch')
                self._begin_stop(0, None, now)
            else:
                self._say(f'required process {name} died (code {code}); stopping the launch')
                self._begin_stop(failure, None, now)
        elif child.plan.respawn:
            lived = now - child.started_at
            if child.starts > 1 and lived < self.crash_loop_s:
                self._say(
                    f'{name} {verb} (code {code}) again {lived:.1f} s after its restart '
                    f'(crash loop: under {self.crash_loop_s:.0f} s); stopping the launch'
                )
                self._begin_stop(failure, None, now)
                return
            delay = child.plan.respawn_delay
            self._say(f'{name} {verb} (code {code}); respawning in {delay:.1f} s')
            child.restart_at = now + delay
        else:
            self._say(f'{name} {verb} (code {code})')
            self._failed |= code != 0

    # --- stopping -----------------------------------------------------------------------
    def _begin_stop(self, code: int, reason: str | None, now: float) -> None:
        if self._stop_stage is not None:
            return
        # A process that failed earlier (not required, not respawned) still counts, as it
        # does when the launch ends by itself.
        self.exit_code = code if code or not self._failed else 1
        if reason:
            self._say(reason)
        for child in self.children:
            child.restart_at = None
        self._stop_stage = 0
        self._signal_alive(self._STAGES[0])
        self._stop_deadline = now + self.sigint_timeout

    def _escalate(self, now: float) -> bool:
        """Send the next, harder signal; returns False when SIGKILL was already sent."""
        if self._stop_stage is None or self._stop_stage + 1 >= len(self._STAGES):
            return False
        self._stop_stage += 1
        sig = self._STAGES[self._stop_stage]
        alive = [c.plan.name for c in self.children if c.alive]
        self._say(f'{", ".join(alive)} still running; sending {sig.name}')
        self._signal_alive(sig)
        self._stop_deadline = now + (self.sigterm_timeout if sig == signal.SIGTERM else 5.0)
        return True

    def _signal_alive(self, sig: int) -> None:
        for child in self.children:
            if child.popen is not None:
                child.signalled = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.popen.pid, sig)

    def _kill_everything(self) -> None:
        # Last resort on the way out: SIGKILL every process group this runner created
        # (children still running after an error, and grandchildren of exited children).
        for child in self.children:
            if child.popen is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.popen.pid, signal.SIGKILL)
                child.popen.wait()
                self._drain(child)
                child.popen = None
        for group in self._groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)

    # --- signals ------------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict[int, Any] | None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return None
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, _frame: self._signals.append(signum))
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any] | None) -> None:
        for sig, handler in (previous or {}).items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, now: float) -> None:
        name = signal.Signals(signum).name
        first = not self._interrupted
        self._interrupted = True
        if self._stop_stage is None:
            self._begin_stop(128 + signum, f'received {name}; stopping all processes', now)
        elif first:
            # The launch was ending by itself (a required process finished): the stop goes
            # on with its grace periods, and the user's interrupt is the exit code (it was
            # 0, and a caller such as `rpl demo` went on to its next run).
            if not self.exit_code:
                self.exit_code = 128 + signum
            self._say(
                f'received {name} while stopping; the launch ends with code {self.exit_code}'
            )
        else:
            self._say(f'received {name} again; escalating')
            self._escalate(now)

    # --- output -------------------------------------------------------------------------
    def _pump(self, timeout: float) -> None:
        if not self._selector.get_map():
            time.sleep(timeout)
            return
        for key, _ in self._selector.select(timeout):
            self._read(key.data, key.fileobj)

    def _read(self, child: _Child, stream: Any) -> bool:
        """Relay what the stream holds now; returns False once it is closed (end of file)."""
        try:
            data = os.read(stream.fileno(), 65536)
        except BlockingIOError:
            return True
        except OSError:
            data = b''
        if data:
            lines = (child.pending + data).split(b'\n')
            child.pending = lines.pop()
            for line in lines:
                self._emit(child, line)
            return True
        self._close(child, stream)
        return False

    def _drain(self, child: _Child) -> None:
        """After an exit: relay everything still in the pipe, then close it."""
        stream = child.popen.stdout if child.popen is not None else None
        if stream is None or stream.closed:
            return
        while True:
            try:
                data = os.read(stream.fileno(), 65536)
            except (BlockingIOError, OSError):
                break  # empty; a surviving grandchild may still hold the write end
            if not data:
                break
            lines = (child.pending + data).split(b'\n')
            child.pending = lines.pop()
            for line in lines:
                self._emit(child, line)
        self._close(child, stream)

    def _close(self, child: _Child, stream: Any) -> None:
        if stream.closed:
            return
        self._selector.unregister(stream)
        stream.close()
        if child.pending:
            self._emit(child, child.pending)
            child.pending = b''
        held, child.held = child.held, None
        for raw in held or []:  # an unfinished traceback: show it
            self._relay(child, raw)

    def _emit(self, child: _Child, raw: bytes) -> None:
        if child.signalled and self._hold_traceback(child, raw):
            return
        self._relay(child, raw)

    def _hold_traceback(self, child: _Child, raw: bytes) -> bool:
        """After a stop signal: hold a Python traceback back until its exception line and
        drop it when that is the ``KeyboardInterrupt`` the signal raised (in a child still
        importing, before its own handler). Returns True when the line was taken."""
        line = raw.decode('utf-8', errors='replace')
        if child.held is None:
            if not line.startswith('Traceback (most recent call last):'):
                return False
            child.held = [raw]
            return True
        child.held.append(raw)
        inside = ('Traceback', 'During handling', 'The above exception', ' ', '\t')
        if line.startswith(inside) or not line.strip():
            return True
        held, child.held = child.held, None
        if line.startswith('KeyboardInterrupt'):
            if not child.interrupted:  # said once: a second signal may raise it again
                self._say(f'{child.plan.name} was interrupted by the stop (traceback not shown)')
            child.interrupted = True  # its exit code then says the stop, not a failure
        else:
            for raw_line in held:
                self._relay(child, raw_line)
        return True

    def _relay(self, child: _Child, raw: bytes) -> None:
        line = raw.decode('utf-8', errors='replace').rstrip('\r')
        if child.log is not None:
            child.log.write(line + '\n')
            child.log.flush()
        else:
            self.write(f'[{child.plan.name}] {line}')


def _print_line(line: str) -> None:
    print(line, flush=True)
