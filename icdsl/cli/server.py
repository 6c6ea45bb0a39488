"""``icdsl server start|stop|status``, and the warm command server itself (the client side, the
console script, is icdsl.cli.launcher: read its docstring first).

The server imports the heavy modules once (:data:`WARM`), checks that no thread runs (a fork
copies only the calling thread: a lock held by another thread would stay locked in the child
forever), then serves on its Unix socket, one request at a time, in one thread: a ``run``
request forks a child that takes the client's descriptors, folder, environment, umask and
arguments and runs ``icdsl.cli.main:main`` as the process would; the server reports the child's
exit status (and its CPU time) to the client and reaps it. A client that goes away ends its
child (SIGTERM, SIGKILL 3 s later); a child that crashes is one failed command, not the
server's end. ``stop`` (or SIGTERM) closes the socket at once and lets the running commands end.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import gc
import importlib
import importlib.machinery
import importlib.util
import io
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
from importlib.metadata import entry_points

import typer

from icdsl.cli import launcher
from icdsl.cli.common import app, echo_err
from icdsl.plugins import ENTRY_POINT_GROUP

server_app = typer.Typer(help="A warm command server, so that commands answer at once: start, stop, status.",
                         no_args_is_help=True)
app.add_typer(server_app, name="server")

#: imported once by the server, so that a command's child finds them loaded (optional ones may be
#: missing): the command line, the check (its cache reader and the compiler), rating and explain,
#: the billing store. Not the other command modules (icdsl.cli.billing...): what a module
#: registers on the app, typer makes into click commands in every child (about 1 ms a command),
#: so they stay for the command that needs them to import (they are light; the store is not)
WARM = (
    "numpy", "pyarrow", "pyarrow.compute", "pyarrow.csv", "pyarrow.ipc",
    "icdsl.cli.main", "icdsl.plan.compiler", "icdsl.lang.loader", "icdsl.lang.formatter",
    "icdsl.rating.run", "icdsl.rating.row", "icdsl.rating.intake", "icdsl.rating.examples",
    "icdsl.charges.groups", "icdsl.charges.percentage", "icdsl.cycle.examples", "icdsl.plugins",
    "icdsl.exporters", "icdsl.readers", "icdsl.validators", "icdsl.billing.store",
    "typer._adapters", "typer._click.decorators", "pydantic", "dateutil.relativedelta", "numpy.ma",
    "email.parser", "holidays",
)
#: native libraries that start threads when loaded: OpenBLAS's pool (via numpy; one thread: a
#: command's arithmetic is on integers, not matrices) and the background thread of the jemalloc
#: linked into Arrow (Arrow allocates with mimalloc by default): the server must have one thread
#: to fork (checked after the imports; a command's child starts Arrow's pools when it needs them)
THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "JE_ARROW_MALLOC_CONF": "background_thread:false"}
#: modules that read the environment when imported (typer's colours and widths): not imported by
#: the server today; if one comes to be, a child drops it, so as to import it again with its own
ENV_AT_IMPORT = ("typer.rich_utils",)
KILL_AFTER = 3.0  # seconds from SIGTERM to SIGKILL for a child whose client went away


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))  # native threads too (OpenBLAS, Arrow)
    except OSError:
        return threading.active_count()


def _plugin_roots() -> list[str]:
    """The files of the installed plugins' modules (an edited plugin makes the server stale)."""
    roots: set[str] = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = importlib.util.find_spec(ep.module.split(".")[0])
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        if spec.submodule_search_locations:
            roots.update(spec.submodule_search_locations)
        elif spec.origin:
            roots.add(spec.origin)
    return sorted(roots)


class _Log:
    def __init__(self, stream) -> None:
        self.stream = stream

    def __call__(self, text: str) -> None:
        self.stream.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{os.getpid()}] {text}\n")
        self.stream.flush()


class _Server:
    def __init__(self, folder: str, identity: dict, roots: list[str], log: _Log, lock: int) -> None:
        self.folder, self.identity, self.roots, self.log, self.lock = folder, identity, roots, log, lock
        self.paths = launcher.paths(folder)
        self.started = time.time()
        self.served = 0
        self.children_cpu = 0.0
        self.stopping = False
        self.running: dict[int, socket.socket | None] = {}  # child pid -> its client's connection
        self.buffers: dict[int, bytearray] = {}
        self.kill_at: dict[int, float] = {}
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    # ------------------------------------------------------------------ life

    def open(self) -> None:
        where = self.paths["socket"]
        temp = f"{where}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        self.listener.bind(temp)
        os.chmod(temp, 0o600)
        self.listener.listen(64)
        os.replace(temp, where)  # an old server's socket (it died) is replaced at once
        state = {"pid": os.getpid(), "identity": self.identity, "roots": self.roots, "started": self.started}
        with open(self.paths["state"] + ".tmp", "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(self.paths["state"] + ".tmp", self.paths["state"])
        for s in (self.wake_r, self.wake_w):
            s.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, self._on_stop_signal)
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")

    def _on_stop_signal(self, signum, frame) -> None:
        self.log(f"server: signal {signal.Signals(signum).name}")
        self.stopping = True

    def close_listener(self) -> None:
        """No new commands: the socket and the state go at once (a client then runs in-process)."""
        if self.listener.fileno() < 0:
            return
        self.sel.unregister(self.listener)
        self.listener.close()
        for p in (self.paths["socket"], self.paths["state"]):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        self.log(f"server: stopping ({len(self.running)} command(s) running)")

    def serve(self) -> dict | None:
        """Serve until stopped (None), or, in a forked child, return its request."""
        while True:
            if self.stopping:
                self.close_listener()
                if not self.running:
                    self.log(f"server: stopped after {self.served} command(s)")
                    return None
            timeout = None
            if self.kill_at:
                timeout = max(0.0, min(self.kill_at.values()) - time.monotonic())
            for key, _ in self.sel.select(timeout):
                if key.data == "accept":
                    child = self._accept()
                    if child is not None:
                        return child
                elif key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        while self.wake_r.recv(4096):
                            pass
                    self._reap()
                else:
                    self._from_client(key.fileobj, key.data)
            now = time.monotonic()
            for pid, when in list(self.kill_at.items()):
                if when <= now:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    del self.kill_at[pid]

    # ------------------------------------------------------------------ requests

    def _accept(self) -> dict | None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return None
        fds: list[int] = []
        try:
            conn.settimeout(2.0)
            msg, fds = launcher.recv_frame(conn, with_fds=4)
            op = msg.get("op")
            if op == "status":
                launcher.send_frame(conn, self.status())
            elif op == "stop":
                launcher.send_frame(conn, {"stopping": True, "pid": os.getpid()})
                peer = _peer(conn)
                try:
                    with open(f"/proc/{peer}/cmdline", "rb") as f:
                        what = f.read().replace(b"\0", b" ").decode(errors="replace")[:200]
                except OSError:
                    what = "?"
                self.log(f"server: stop asked by process {peer} ({what})")
                self.stopping = True
            elif op == "run":
                return self._run(conn, msg, fds)
        except (OSError, EOFError, ValueError) as e:
            self.log(f"server: a request failed: {e!r}")
        for fd in fds:
            os.close(fd)
        conn.close()
        return None

    def _refuse(self, conn: socket.socket, fds: list[int], why: str) -> None:
        self.log(f"server: refused a command: {why}")
        launcher.send_frame(conn, {"refused": why})
        for fd in fds:
            os.close(fd)
        conn.close()

    def _run(self, conn: socket.socket, msg: dict, fds: list[int]) -> dict | None:
        if self.stopping:
            return self._refuse(conn, fds, "the server is stopping")
        if len(fds) != 4:
            return self._refuse(conn, fds, "the descriptors did not arrive")
        if msg.get("identity") != self.identity:
            self.stopping = True  # the code changed: a stale server stops
            self.log(f"server: other code: {_differs(self.identity, msg.get('identity') or {})}")
            return self._refuse(conn, fds, "stale: this server runs other code than the client's")
        threads = _threads()
        if threads != 1:
            self.stopping = True
            return self._refuse(conn, fds, f"{threads} threads in the server: forking is unsafe")
        pid = os.fork()
        if pid == 0:
            self._close_in_child(conn)
            msg["fds"] = fds
            return msg
        for fd in fds:
            os.close(fd)
        self.log(f"server: command {pid} for process {_peer(conn)}: {' '.join(msg['argv'][1:])[:200]}")
        self.running[pid] = conn
        try:
            launcher.send_frame(conn, {"pid": pid})
        except OSError:
            self._client_gone(pid, conn)
            return None
        conn.setblocking(False)
        self.buffers[conn.fileno()] = bytearray()
        self.sel.register(conn, selectors.EVENT_READ, pid)
        return None

    def _close_in_child(self, conn: socket.socket) -> None:
        signal.set_wakeup_fd(-1)
        for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for c in (*self.running.values(), conn, self.listener, self.wake_r, self.wake_w):
            if c is not None:
                c.close()
        self.sel.close()
        os.close(self.lock)

    def _from_client(self, conn: socket.socket, pid: int) -> None:
        """A signal to forward, or the end of the client (it died: its child ends too)."""
        buf = self.buffers[conn.fileno()]
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._client_gone(pid, conn)
            return
        buf += data
        while len(buf) >= 4:
            size = int.from_bytes(buf[:4], "big")
            if len(buf) < 4 + size:
                break
            frame, buf[:] = bytes(buf[4:4 + size]), buf[4 + size:]
            with contextlib.suppress(ValueError, TypeError):
                signum = int(json.loads(frame)["signal"])
                if signum in launcher.FORWARDED:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signum)

    def _client_gone(self, pid: int, conn: socket.socket) -> None:
        self._forget(conn)
        if self.running.get(pid) is conn:
            self.running[pid] = None
            self.log(f"server: the client of {pid} went away: ending it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            self.kill_at[pid] = time.monotonic() + KILL_AFTER

    def _forget(self, conn: socket.socket) -> None:
        if conn.fileno() >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(conn)
            self.buffers.pop(conn.fileno(), None)
            conn.close()

    def _reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            cpu = usage.ru_utime + usage.ru_stime
            self.served += 1
            self.children_cpu += cpu
            self.kill_at.pop(pid, None)
            conn = self.running.pop(pid, None)
            done = {"cpu": cpu, "exit": None, "signal": None}
            if os.WIFSIGNALED(status):
                done["signal"] = os.WTERMSIG(status)
                self.log(f"server: command {pid} ended by signal {done['signal']}")
            else:
                done["exit"] = os.waitstatus_to_exitcode(status)
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.setblocking(True)
                    conn.settimeout(2.0)
                    launcher.send_frame(conn, done)
                self._forget(conn)

    def status(self) -> dict:
        own = os.times()
        return {"pid": os.getpid(), "started": self.started, "uptime": time.time() - self.started,
                "served": self.served, "running": len(self.running), "children_cpu": self.children_cpu,
                "server_cpu": own.user + own.system, "identity": self.identity, "threads": _threads(),
                "socket": self.paths["socket"], "log": self.paths["log"]}


def _differs(mine: dict, theirs: dict) -> str:
    return ", ".join(k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k))


def _peer(conn: socket.socket) -> int:
    """The pid of the process at the other end (SO_PEERCRED: pid, uid, gid)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    return int.from_bytes(creds[:4], sys.byteorder)


def _become(msg: dict) -> None:
    """In the child: take the client's descriptors, folder, umask, environment and arguments."""
    fds = msg["fds"]
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
        os.close(fd)
    os.fchdir(fds[3])
    os.close(fds[3])
    os.umask(int(msg["umask"]))
    os.environ.clear()
    os.environ.update(msg["env"])
    sys.argv = list(msg["argv"])
    sys.path.insert(0, msg["path0"])
    main = sys.modules["__main__"]
    package, spec = msg["main"]
    main.__package__ = package
    main.__spec__ = importlib.machinery.ModuleSpec(spec, None) if spec else None
    streams = []
    for fd, spec_ in enumerate(msg["stdio"]):
        encoding, errors, line_buffering, write_through = spec_ or ("utf-8", "strict", False, False)
        raw = io.open(fd, "rb" if fd == 0 else "wb", closefd=False)  # noqa: UP020, SIM115 - the streams of the process
        streams.append(io.TextIOWrapper(raw, encoding=encoding, errors=errors, newline="\n",
                                        line_buffering=line_buffering, write_through=write_through))
    sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams
    for name in ENV_AT_IMPORT:  # imported again by the next `from typer import rich_utils`
        if sys.modules.pop(name, None) is not None:
            parent, _, child = name.rpartition(".")
            with contextlib.suppress(AttributeError, KeyError):
                delattr(sys.modules[parent], child)


def run() -> None:
    """The server process (started by :func:`icdsl.cli.launcher.spawn`): warm up, serve, and in
    each forked child run the command line."""
    log = _Log(sys.stderr)
    start_env = dict(os.environ)
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]  # `python -c`: the current folder; a child puts the client's first entry back
    try:
        folder = launcher.private_dir(create=True)
    except launcher.Unavailable as e:
        log(f"server: not started: {e}")
        sys.exit(1)
    where = launcher.paths(folder)
    lock = os.open(where["socket"] + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        log("server: not started: another server of this installation is running")
        sys.exit(0)
    os.environ.update(THREAD_ENV)
    roots = _plugin_roots()
    before = launcher.identity(roots, start_env, sys.path)
    began = time.perf_counter()
    for name in WARM:
        try:
            importlib.import_module(name)
        except ImportError as e:
            log(f"server: {name} not loaded: {e}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):  # the plugins' modules (their hooks load in the child)
        try:
            importlib.import_module(ep.module)
        except Exception as e:  # noqa: BLE001 - a broken plugin is the child's to report, as in-process
            log(f"server: plugin {ep.name} not loaded: {e!r}")
    if launcher.identity(roots, start_env, sys.path) != before:
        log("server: not started: icdsl's files changed while it started")
        sys.exit(1)
    threads = _threads()
    if threads != 1:
        names = [t.name for t in threading.enumerate()]
        log(f"server: not started: {threads} threads after the imports ({names}): forking would be unsafe")
        sys.exit(1)
    gc.collect()
    gc.freeze()  # the warm modules' objects: a child's collections do not visit (and copy) them
    server = _Server(folder, before, roots, log, lock)
    server.open()
    log(f"server: ready in {time.perf_counter() - began:.2f} s, {len(sys.modules)} modules, 1 thread, "
        f"socket {where['socket']}")
    child = server.serve()
    if child is None:
        sys.exit(0)
    _become(child)
    os._exit(_command(importlib.import_module("icdsl.cli.main").main))


def _command(main) -> int:
    """Run ``main`` and end as the interpreter ends a process (the exit status of SystemExit, the
    traceback of an uncaught exception, non-daemon threads joined, atexit callbacks, the streams
    flushed), but without finalizing every module: that would touch (copy) all of the server's
    memory for nothing."""
    try:
        main()
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            with contextlib.suppress(Exception):
                print(e.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - as the interpreter: the traceback, exit status 1
        sys.excepthook(*sys.exc_info())
        code = 1
    with contextlib.suppress(Exception):
        threading._shutdown()  # type: ignore[attr-defined] - what the interpreter calls at exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe: as the interpreter, status 120
            code = 120
    return code & 0xFF


# --------------------------------------------------------------------------- the commands


def _folder() -> str:
    try:
        return launcher.private_dir(create=True)
    except launcher.Unavailable as e:
        echo_err(f"error: {e}")
        raise typer.Exit(1) from None


def _status(folder: str) -> dict | None:
    try:
        return launcher.ask(folder, {"op": "status"})
    except launcher.Unavailable:
        return None


def _gone(pid: int) -> bool:
    """Ended (or a zombie left to its parent to reap)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _stop(folder: str, wait: float = 10.0) -> int | None:
    try:
        answer = launcher.ask(folder, {"op": "stop"})
    except launcher.Unavailable:
        return None
    pid = int(answer["pid"])
    deadline = time.monotonic() + wait
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return pid


@server_app.command("start")
def start(wait: float = typer.Option(60.0, help="Seconds to wait for the server to be ready.")) -> None:
    """Start the warm command server of this installation in the background."""
    folder = _folder()
    found = _status(folder)
    if found is not None:
        if found["identity"] == launcher.identity(_plugin_roots()):
            typer.echo(f"a server is already running (pid {found['pid']}, socket {found['socket']})")
            return
        _stop(folder)
        typer.echo(f"stopped the server of other code (pid {found['pid']})")
    log = launcher.paths(folder)["log"]
    with open(log, "a", encoding="utf-8") as f:  # made here, so that it can be read at once
        offset = f.tell()
    os.chmod(log, 0o600)
    launcher.spawn(folder)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        found = _status(folder)
        if found is not None:
            typer.echo(f"server started (pid {found['pid']}), socket {found['socket']}, log {found['log']}")
            return
        with open(log, encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            said = [line.split("] ", 1)[-1] for line in f.read().splitlines() if "not started" in line]
        if said:
            echo_err(f"error: {said[-1]}")
            raise typer.Exit(1)
        time.sleep(0.05)
    echo_err(f"error: the server did not answer within {wait:g} s (see {log})")
    raise typer.Exit(1)


@server_app.command("stop")
def stop() -> None:
    """Stop the server (the commands it runs finish first)."""
    pid = _stop(_folder())
    typer.echo("no server running" if pid is None else f"server stopped (pid {pid})")


@server_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="The server's figures as JSON.")) -> None:
    """Whether a server runs, and what it has served. Exit code 1 when none runs."""
    folder = _folder()
    found = _status(folder)
    if found is None:
        typer.echo("{}" if as_json else "no server running")
        raise typer.Exit(1)
    found["current"] = found.pop("identity") == launcher.identity(_plugin_roots())
    if as_json:
        typer.echo(json.dumps(found))
        return
    typer.echo(f"server running: pid {found['pid']}, up {found['uptime']:.0f} s, {found['served']} command(s) "
               f"served, {found['running']} running, children's CPU {found['children_cpu']:.2f} s\n"
               f"socket {found['socket']}\nlog {found['log']}")
    if not found["current"]:
        typer.echo("stale: icdsl's code changed since it started; it will not be used (it stops at the next command)")
