"""Run what could crash or hang the interpreter in a child process, with limits.

How the pieces fit::

    Worker(backend)                 a long-lived child Python (this file run as a script)
        .run(case, timeout) -> Outcome("ok" | "error" | "crash" | "hang", ...)
                                    one JSON line to the child, one JSON line back; a child
                                    that dies (segfault, abort) or does not answer in time is
                                    recorded, killed and restarted on the next case
    child loop (main below)         reads cases from stdin, runs each on the selected
                                    backend, writes the outcome to the real stdout (fd 3)

A case is a dict. ``{"code": "..."}`` executes the code with ``np``, ``cnnlab``, ``F``
(cnnlab.functional), ``lab`` and ``R`` (cnnlab.reference) in scope; its variable
``result`` (an array, a tuple of arrays, or JSON data) comes back. ``{"op": ...}`` is a
fuzz case, built and run by ``fuzzcases.execute``. Arrays travel as ``.npy`` bytes in base64
(never pickled). The child's own stdout/stderr go to a log kept for the failure message.

The child gets an address-space limit (``memory_gb``), so that a runaway allocation fails
with MemoryError instead of taking the machine, and ``OMP_NUM_THREADS=2`` unless told.
"""
from __future__ import annotations

import base64
import io
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple, Optional

HERE = os.path.dirname(os.path.abspath(__file__))


class Outcome(NamedTuple):
    status: str                 # "ok", "error" (a Python exception), "crash", "hang"
    value: object = None        # "ok": the decoded result
    error: Optional[str] = None  # "error": "TypeName: message"; "crash": the signal / code
    log: str = ""               # the child's stderr tail, for a crash or a hang
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status in ("crash", "hang")


def signal_name(returncode: int) -> str:
    if returncode is not None and returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


# --------------------------------------------------------------------------- encoding


#: Arrays with more elements travel as a sample of SAMPLE of them, at positions that depend
#: only on the array's shape (so two twins' results are sampled alike).
LARGE, SAMPLE = 2**20, 2**16


def sample(a):
    """A large array's entries at SAMPLE positions fixed by its shape, flat; else a."""
    import numpy as np
    if a.size <= LARGE:
        return a
    rng = np.random.default_rng(list(a.shape))
    return a.reshape(-1)[np.sort(rng.choice(a.size, SAMPLE, replace=False))]


def encode(value):
    """Arrays (and tuples/lists of them) -> JSON data; other JSON data unchanged. A large
    array is sent as ``sample(array)`` with its shape (see LARGE)."""
    import numpy as np
    if isinstance(value, np.ndarray):
        buf = io.BytesIO()
        np.save(buf, sample(value), allow_pickle=False)
        out = {"npy": base64.b64encode(buf.getvalue()).decode("ascii")}
        if value.size > LARGE:
            out["shape"] = list(value.shape)
        return out
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    if hasattr(value, "detach"):                    # a torch tensor
        return encode(value.detach().cpu().numpy())
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):   # NumPy scalar
        return value.item()
    return value


class Sampled:
    """A large result: its shape, dtype and the values at the sampled positions."""

    def __init__(self, shape, dtype, values):
        self.shape, self.dtype, self.values = shape, dtype, values


def decode(value):
    import numpy as np
    if isinstance(value, dict) and "npy" in value:
        a = np.load(io.BytesIO(base64.b64decode(value["npy"])), allow_pickle=False)
        return Sampled(tuple(value["shape"]), a.dtype, a) if "shape" in value else a
    if isinstance(value, list):
        return tuple(decode(v) for v in value)
    return value


# --------------------------------------------------------------------------- parent side


def _limits(memory_gb):
    def apply():
        os.setsid()                     # its own process group: kill it and its threads
        if memory_gb:
            import resource
            limit = int(memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:                            # no core files from the crashes we provoke
            import resource
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ImportError, ValueError, OSError):
            pass
    return apply


class Worker:
    """A child Python that runs cases on one backend; restarted after a crash or a hang."""

    def __init__(self, backend: str, memory_gb: Optional[float] = 6, env: Optional[dict] = None,
                 start_timeout: float = 120):
        self.backend = backend
        self.memory_gb = memory_gb
        self.env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
                        PYTHONFAULTHANDLER="1")
        self.env.update(env or {})
        self.start_timeout = start_timeout
        self.proc = None
        self.log = None
        self.starts = 0

    def _start(self):
        self.log = tempfile.TemporaryFile()
        out_r, out_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "_child.py"), self.backend, str(out_w)],
            stdin=subprocess.PIPE, stdout=self.log, stderr=self.log, pass_fds=(out_w,),
            env=self.env, preexec_fn=_limits(self.memory_gb), cwd=HERE)
        os.close(out_w)
        self._out = os.fdopen(out_r, "rb", buffering=0)
        self._buffer = bytearray()
        self.starts += 1
        ready = self._read_line(self.start_timeout)
        if ready is None or json.loads(ready) != {"ready": self.backend}:
            log = self._log_tail()
            self.close()
            raise RuntimeError(f"the {self.backend} worker did not start: {ready!r}\n{log}")

    def _read_line(self, timeout):
        """One line from the child, or None if it died or the time ran out."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer[-(1 << 20):]:      # only the new chunk can hold it
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._out], [], [], left)
            if not ready:
                return None
            chunk = self._out.read(1 << 20)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return line.decode()

    def _log_tail(self, n=3000) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-n:]

    def run(self, case: dict, timeout: float = 30) -> Outcome:
        """Run one case: its outcome, within ``timeout`` seconds or "hang"."""
        self.submit(case)
        return self.result(timeout)

    def submit(self, case: dict) -> None:
        """Send a case without waiting (several workers then compute at once)."""
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self._start()
        self._sent = time.monotonic()
        try:
            self.proc.stdin.write((json.dumps(case) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def result(self, timeout: float = 30) -> Outcome:
        """The outcome of the case submitted last, ``timeout`` seconds after it was sent."""
        line = self._read_line(self._sent + timeout - time.monotonic())
        seconds = time.monotonic() - self._sent
        if line is not None:
            reply = json.loads(line)
            if "error" in reply:
                return Outcome("error", error=reply["error"], seconds=seconds)
            return Outcome("ok", value=decode(reply["value"]), seconds=seconds)
        code = self.proc.poll()
        if code is None:                # alive but silent: a hang
            self.close()
            return Outcome("hang", error=f"no answer within {timeout} s",
                           log=self._last_log, seconds=seconds)
        log = self._log_tail()
        self.close()
        return Outcome("crash", error=signal_name(code), log=log, seconds=seconds)

    def close(self):
        self._last_log = self._log_tail()
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()
            for f in (self.proc.stdin, self._out):
                try:
                    f.close()
                except OSError:
                    pass
            self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_code(backend: str, code: str, timeout: float = 60, memory_gb: Optional[float] = 6,
             env: Optional[dict] = None) -> Outcome:
    """One code case in a fresh child (see the module docstring)."""
    with Worker(backend, memory_gb, env) as w:
        return w.run({"code": code}, timeout)


def fork_and_wait(target, args=(), timeout: float = 30):
    """Run ``target(*args, conn)`` in a forked child; its one message through ``conn``, or
    "hung" when none came within ``timeout`` seconds (the child is then killed)."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=target, args=tuple(args) + (send,), daemon=True)
    child.start()
    send.close()
    answered = receive.poll(timeout)
    if not answered:
        child.kill()
    child.join(10)
    return receive.recv() if answered else "hung"


def describe(outcome: Outcome) -> str:
    text = f"{outcome.status}: {outcome.error or ''}"
    if outcome.log:
        text += "\n--- child log ---\n" + outcome.log
    return text


# --------------------------------------------------------------------------- child side


def _child_main(backend: str, fd: int):
    out = os.fdopen(fd, "w", buffering=1)
    import numpy as np
    import cnnlab
    from cnnlab import functional as F, lab, reference as R
    if backend != "default":
        cnnlab.set_backend(backend)

    def reply(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    reply({"ready": backend})
    for line in sys.stdin:
        case = json.loads(line)
        print(f"case: {line.strip()[:2000]}", file=sys.stderr, flush=True)
        try:
            if "code" in case:
                scope = dict(np=np, cnnlab=cnnlab, F=F, lab=lab, R=R)
                exec(case["code"], scope)
                value = scope.get("result")
            else:
                import fuzzcases
                value = fuzzcases.execute(case)
            reply({"value": encode(value)})
        except Exception as e:  # noqa: BLE001 - every exception is an outcome to report
            reply({"error": f"{type(e).__name__}: {str(e)[:500]}"})


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    _child_main(sys.argv[1], int(sys.argv[2]))
