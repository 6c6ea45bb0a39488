"""The ``icdsl`` console script: hands the command to a warm command server when one answers,
else runs the command line in this process.

A command's time on a small project is almost all imports (numpy, pyarrow, typer, icdsl's own
modules). ``icdsl server start`` (icdsl.cli.server) starts a background process that imports
them once and listens on a Unix socket; for each command it forks a child, a fresh copy of that
warm state. This module, the client, is kept tiny (the standard library's os/sys/socket/struct/
json/stat/signal only): it passes its own stdin, stdout and stderr *file descriptors* over the
socket (SCM_RIGHTS), with its argv, working folder (a descriptor too), environment, umask and
text encodings; the child puts them in place and runs ``icdsl.cli.main:main``; the server
reports the child's exit status, with which this process exits. Ctrl-C (SIGINT), SIGTERM,
SIGHUP and SIGWINCH are forwarded to the child; if this process dies, the server ends the child.

The command runs here, in this process, when: ``ICDSL_SERVER=0`` (or ``off``); the command is
``server``, ``tui``, ``lsp`` or ``serve`` (long-lived or the server's own); no server answers;
or the server's **identity** differs from this installation's (see :func:`identity`: icdsl's
version, the interpreter and its flags, ``sys.path``, the environment variables read at import
time, and the size and modification time of every file of the icdsl package, its grammar and
standard rules, the plugins' folders and the site-packages folders). A server whose identity no
longer matches (the code was edited or upgraded) is told to stop, and the command runs here:
stale code is never run. ``ICDSL_SERVER=auto`` starts a server in the background when none
answers (the command itself runs here; the next ones are served).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import struct
import sys

import icdsl

ENV = "ICDSL_SERVER"  # 0/off: never use a server; auto: start one when none answers; else: use one if it answers
ENV_DIR = "ICDSL_SERVER_DIR"  # the private folder of the socket, state and log (default below)
IN_PROCESS = frozenset({"server", "tui", "lsp", "serve"})
#: environment variables read when modules are imported (the interpreter's, the native libraries'):
#: a server started with other values is not used
IMPORT_ENV = ("PYTHON", "OPENBLAS_", "OMP_", "MKL_", "NUMPY_", "ARROW_", "JE_ARROW_", "LC_", "LANG")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH)
PACKAGE = os.path.dirname(os.path.abspath(icdsl.__file__))
_HEADER = struct.Struct("!I")
_MAX_FRAME = 16 * 1024 * 1024


class Unavailable(Exception):
    """No usable server: the command runs in this process."""


# --------------------------------------------------------------------------- where and who


def server_dir() -> str:
    """``$ICDSL_SERVER_DIR``, else ``$XDG_RUNTIME_DIR/icdsl``, else ``/tmp/icdsl-UID``."""
    given = os.environ.get(ENV_DIR)
    if given:
        return given
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "icdsl")
    return os.path.join("/tmp", f"icdsl-{os.getuid()}")


def private_dir(create: bool) -> str:
    """The server folder, made 0700 if ``create``; refused (:class:`Unavailable`, with the reason)
    unless it is a real folder owned by this user that no one else may enter."""
    path = server_dir()
    if create:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as e:
            raise Unavailable(f"cannot make the server folder {path}: {e.strerror}") from None
    try:
        st = os.lstat(path)
    except OSError:
        raise Unavailable(f"no server folder {path}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise Unavailable(f"the server folder {path} is not a folder")
    if st.st_uid != os.getuid():
        raise Unavailable(f"the server folder {path} belongs to another user")
    if st.st_mode & 0o077:
        raise Unavailable(f"the server folder {path} is open to others (mode {stat.S_IMODE(st.st_mode):o}, "
                          "want 700)")
    return path


def _key(package: str = PACKAGE) -> str:
    """One server per interpreter and icdsl installation (two virtual environments, two servers)."""
    text = f"{sys.prefix}\0{package}".encode("utf-8", "surrogateescape")
    h = 0xCBF29CE484222325  # FNV-1a, 64 bits: no import for a name
    for b in text:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def paths(folder: str) -> dict[str, str]:
    base = os.path.join(folder, _key())
    return {"socket": base + ".sock", "state": base + ".json", "log": base + ".log"}


# --------------------------------------------------------------------------- identity


def _tree(root: str) -> list:
    """[root, files, total size, newest mtime_ns, newest folder mtime_ns] of the files under ``root``
    (stat only; __pycache__ skipped): an edited, added or removed file changes it."""
    files = size = newest = newest_dir = 0
    stack = [root]
    try:
        st = os.stat(root)
    except OSError:
        return [root, -1, 0, 0, 0]
    if not stat.S_ISDIR(st.st_mode):  # a plugin of one module
        return [root, 1, st.st_size, st.st_mtime_ns, 0]
    newest_dir = st.st_mtime_ns
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    if e.name != "__pycache__":
                        stack.append(e.path)
                        newest_dir = max(newest_dir, e.stat(follow_symlinks=False).st_mtime_ns)
                    continue
                st = e.stat()
            except OSError:
                continue
            files += 1
            size += st.st_size
            newest = max(newest, st.st_mtime_ns)
    return [root, files, size, newest, newest_dir]


def source_roots() -> list[str]:
    """The icdsl package, and beside it (a source checkout) the grammar and the standard rules."""
    parent = os.path.dirname(PACKAGE)
    return [PACKAGE, *(p for p in (os.path.join(parent, "grammar"), os.path.join(parent, "stdlib_rules"))
                       if os.path.isdir(p))]


def identity(extra_roots: list[str], environ: dict[str, str] | None = None, path: list[str] | None = None) -> dict:
    """What a server's warm state depends on; equal for a client and a server of the same code.
    ``path``: the import path without its first entry (the script's folder, given per command)."""
    env = os.environ if environ is None else environ
    folders = []
    for p in sys.path[1:] if path is None else path:
        try:
            folders.append([p, os.stat(p).st_mtime_ns])  # a package installed or removed there
        except OSError:
            folders.append([p, None])
    return {
        "version": icdsl.__version__,
        "executable": [sys.prefix, os.path.realpath(sys.executable)],  # bin/python or bin/python3 of one venv
        "python": sys.version,
        "flags": list(sys.flags),
        "encoding": sys.getfilesystemencoding(),
        "path": folders,
        "env": sorted([k, v] for k, v in env.items() if k.startswith(IMPORT_ENV)),
        "sources": [_tree(r) for r in (*source_roots(), *extra_roots)],
    }


# --------------------------------------------------------------------------- frames


def send_frame(sock: socket.socket, obj: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(obj).encode()
    data = _HEADER.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [data], fds)
        data = data[sent:]
    if data:
        sock.sendall(data)


def _recv_exact(sock: socket.socket, n: int, head: bytes = b"") -> bytes:
    buf = bytearray(head)
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket, with_fds: int = 0) -> tuple[dict, list[int]]:
    """A frame (and up to ``with_fds`` descriptors sent with it); EOFError at the end."""
    fds: list[int] = []
    if with_fds:
        head, fds, _, _ = socket.recv_fds(sock, 65536, with_fds)
        if not head:
            raise EOFError
    else:
        head = b""
    head = _recv_exact(sock, _HEADER.size, head[:_HEADER.size]) + head[_HEADER.size:]
    (size,) = _HEADER.unpack(head[:_HEADER.size])
    if size > _MAX_FRAME:
        raise EOFError
    body = _recv_exact(sock, size, head[_HEADER.size:])
    return json.loads(body), fds


def connect(folder: str) -> socket.socket:
    """A connection to this installation's server, if its socket is this user's."""
    where = paths(folder)["socket"]
    try:
        st = os.lstat(where)
    except OSError:
        raise Unavailable("no server") from None
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
        raise Unavailable(f"{where} is not this user's socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(where)
    except OSError:
        sock.close()
        raise Unavailable("the server does not answer") from None
    return sock


def read_state(folder: str) -> dict:
    try:
        with open(paths(folder)["state"], encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        raise Unavailable("no server") from None


def ask(folder: str, request: dict, timeout: float = 5.0) -> dict:
    """A one-frame request (status, stop) and its answer."""
    sock = connect(folder)
    try:
        sock.settimeout(timeout)
        send_frame(sock, request)
        return recv_frame(sock)[0]
    except (OSError, EOFError, ValueError):
        raise Unavailable("the server did not answer") from None
    finally:
        sock.close()


# --------------------------------------------------------------------------- starting a server


SERVER_CODE = "from icdsl.cli.server import run; run()"


def spawn(folder: str) -> int:
    """Start a server in the background (its own session, detached from this process: a double
    fork), its output to its log; the pid of the intermediate child, already reaped."""
    log = paths(folder)["log"]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs or exits
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            null = os.open(os.devnull, os.O_RDONLY)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.closerange(3, 1024)
            os.chdir("/")
            os.execv(sys.executable, [sys.executable, "-c", SERVER_CODE])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)
    return pid


# --------------------------------------------------------------------------- the client


def _command(argv: list[str]) -> str | None:
    """The command's name: the first argument that is not a root option (``--plugin M``)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--plugin":
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        return a
    return None


def _stream(s) -> list | None:
    try:
        return [s.encoding, s.errors, s.line_buffering, getattr(s, "write_through", False)]
    except AttributeError:
        return None


def request() -> tuple[dict, list[int]]:
    """This process's command as a request, and the descriptors to send with it."""
    for fd in (0, 1, 2):
        os.fstat(fd)  # OSError if closed: run here
    cwd = os.open(".", getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    req = {
        "op": "run",
        "argv": sys.argv,
        "path0": sys.path[0] if sys.path else "",
        "main": [getattr(main, "__package__", None), spec.name if spec is not None else None],
        "env": dict(os.environ),
        "umask": _umask(),
        "stdio": [_stream(sys.stdin), _stream(sys.stdout), _stream(sys.stderr)],
    }
    return req, [0, 1, 2, cwd]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def run_in_server(folder: str, roots: list[str]) -> int:
    """Run this process's command in the server; its exit status (raises Unavailable before the
    command started, so that it can run here instead)."""
    sock = connect(folder)
    try:
        req, fds = request()
    except OSError:
        sock.close()
        raise Unavailable("this process's descriptors cannot be passed") from None
    req["identity"] = identity(roots)
    try:
        send_frame(sock, req, fds)
        answer, _ = recv_frame(sock)
    except (OSError, EOFError, ValueError):
        sock.close()
        raise Unavailable("the server did not take the command") from None
    finally:
        os.close(fds[-1])
    if "pid" not in answer:
        sock.close()
        raise Unavailable(answer.get("refused", "refused"))

    def forward(signum, frame):
        with contextlib.suppress(OSError):
            send_frame(sock, {"signal": signum})

    for s in FORWARDED:
        signal.signal(s, forward)
    try:
        done, _ = recv_frame(sock)
    except (OSError, EOFError, ValueError):
        sys.stderr.write("icdsl: the command server stopped during the command\n")
        return 3
    finally:
        sock.close()
    for s in FORWARDED:
        signal.signal(s, signal.SIG_DFL)
    if done.get("signal"):
        # die as the child did, so that a shell sees the same (e.g. 128 + 9 after a SIGKILL)
        sys.stdout.flush()
        os.kill(os.getpid(), done["signal"])
        return 128 + done["signal"]
    return int(done.get("exit", 3))


def try_server() -> int | None:
    """The command's exit status when a server ran it, else None (run it here)."""
    mode = os.environ.get(ENV, "").strip().lower()
    if mode in ("0", "off", "no", "false") or _command(sys.argv[1:]) in IN_PROCESS:
        return None
    try:
        folder = private_dir(create=mode == "auto")
    except Unavailable:
        return None
    try:
        state = read_state(folder)
    except Unavailable:
        if mode == "auto":
            _start_quietly(folder)
        return None
    roots = state.get("roots", [])
    if state.get("identity") != identity(roots):
        with contextlib.suppress(Unavailable):  # stale: other code than ours; it stops (its commands finish)
            ask(folder, {"op": "stop"}, timeout=1.0)
        if mode == "auto":
            _start_quietly(folder)
        return None
    try:
        return run_in_server(folder, roots)
    except Unavailable:
        return None


def _start_quietly(folder: str) -> None:
    with contextlib.suppress(OSError):
        spawn(folder)


def main() -> None:
    try:
        code = try_server()
    except KeyboardInterrupt:  # Ctrl-C before the command started (or between it and the forwarding)
        sys.exit(130)
    if code is not None:
        sys.exit(code)
    # lazy: the whole command line, only when no server ran the command
    from icdsl.cli.main import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()
