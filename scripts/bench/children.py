"""scripts/bench/children.py: the processes a bench.py run starts, each the leader of a process
group of its own, so that stopping one reaches its own children too, and a Ctrl-C at the terminal
reaches only bench.py, which then stops them all (scripts/lib/work.sh does the same for the bash
scripts). Every wait here is bounded.
"""

import os
import signal
import subprocess
import time


class ChildError(Exception):
    """A program that cannot be started."""


class Children:
    """Every process this run starts, each the leader of a process group of its own (so that its
    own children are reached too, and a Ctrl-C at the terminal reaches only us: we stop them)."""

    def __init__(self):
        self.procs = []

    def spawn(self, cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=None):
        """Starts cmd with stdout/stderr to the given paths (or DEVNULL / STDOUT)."""
        files = []
        try:
            if isinstance(stdout, str):
                stdout = open(stdout, "wb")
                files.append(stdout)
            if isinstance(stderr, str):
                stderr = open(stderr, "wb")
                files.append(stderr)
            p = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=stdout,
                                 stderr=stderr, cwd=cwd, start_new_session=True)
        except OSError as e:
            raise ChildError(f"cannot start {cmd[0]}: {e}") from e
        finally:
            for f in files:
                f.close()
        self.procs.append(p)
        return p

    def forget(self, p):
        if p in self.procs:
            self.procs.remove(p)

    def run(self, cmd, timeout, **kw):
        """Runs cmd to its end within timeout seconds; the exit code, 124 when it was stopped
        for taking longer (as timeout(1) says), 127 when it cannot be started."""
        try:
            p = self.spawn(cmd, **kw)
        except ChildError:
            return 127
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(p, grace=5)
            return 124
        finally:
            self.forget(p)

    def cleanup(self):
        """Children first asked to stop (a loop of theirs may start new processes), then made to."""
        procs, self.procs = self.procs, []
        for p in procs:
            signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in procs:
            signal_group(p, signal.SIGKILL)
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass


def signal_group(p, sig):
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_group(p, grace):
    signal_group(p, signal.SIGTERM)
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        signal_group(p, signal.SIGKILL)
        p.wait(timeout=5)


def alive(p):
    return p.poll() is None
