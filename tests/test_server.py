"""The warm command server (icdsl.cli.server) and the console script's launcher (icdsl.cli.launcher):
a served command answers exactly as in-process (output, exit status, stdin), stale code is never
run, the socket's folder is private, and no process is left behind (stop, a killed client).

Every test runs the real console script in subprocesses, with its own server folder; the
``server`` fixture stops its server (and checks it is gone) whatever the test did.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import pytest

from icdsl.cli import launcher

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "interconnect"
ICDSL = str(Path(sys.executable).with_name("icdsl"))
RECORD = ("partner=LUMFR direction=outbound service=voice b_number=33612345678 "
          "start=2026-03-04T09:15:00+01:00 duration_s=61")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the server is for Linux (fork, SCM_RIGHTS)")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie left to init runs nothing
    except OSError:
        return True


class Server:
    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env, self.folder = env, folder

    def icdsl(self, *args: str, served: bool = True, cwd: Path = EXAMPLE, python: list[str] | None = None,
              **kw) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, ICDSL_SERVER="1" if served else "0")
        env.update(kw.pop("env", {}))
        return subprocess.run([*(python or [ICDSL]), *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=120, **kw)

    def status(self) -> dict:
        done = self.icdsl("server", "status", "--json")
        return json.loads(done.stdout)

    def start(self) -> dict:
        done = self.icdsl("server", "start")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "server started" in done.stdout
        return self.status()


@pytest.fixture
def server(tmp_path):
    folder = Path(tempfile.mkdtemp(prefix="icsrv", dir="/tmp")) / "s"  # a socket path is at most 107 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICDSL_")}
    env.update(ICDSL_SERVER_DIR=str(folder), ICDSL_CACHE_DIR=str(tmp_path / "cache"))
    s = Server(env, folder)
    pids = []
    try:
        yield s
    finally:
        state = folder / f"{launcher._key()}.json"
        if state.exists():
            pids.append(json.loads(state.read_text())["pid"])
        s.icdsl("server", "stop")
        for pid in pids:
            deadline = time.monotonic() + 10
            while not _gone(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"the server {pid} did not stop")
        shutil.rmtree(folder.parent, ignore_errors=True)


def _said(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.endswith("records/s"))


def _same(server: Server, *args: str, stdin_file: Path | None = None, **kw) -> subprocess.CompletedProcess[str]:
    def run(served: bool) -> subprocess.CompletedProcess[str]:
        if stdin_file is None:
            return server.icdsl(*args, served=served, **kw)
        with open(stdin_file, "rb") as f:
            return server.icdsl(*args, served=served, stdin=f, **kw)

    before = server.status()["served"]
    here = run(False)
    there = run(True)
    assert server.status()["served"] == before + 1, "the command was not served"
    assert (there.returncode, _said(there.stdout), there.stderr) == (here.returncode, _said(here.stdout), here.stderr)
    return there


def test_served_commands_answer_exactly_as_in_process(server, tmp_path):
    found = server.start()
    assert found["threads"] == 1 and found["current"]
    assert "ok: " in _same(server, "check", ".").stdout
    assert _same(server, "check", ".", "--format", "json").returncode == 0
    rated = _same(server, "rate", ".", "--cdrs", "traffic.csv", "--out", str(tmp_path / "out"))
    assert rated.returncode == 0 and "counts reconcile" in rated.stdout
    assert "LUMFR" in _same(server, "explain", ".", "--record", RECORD).stdout
    assert _same(server, "no-such-command").returncode == 2  # usage errors: click's message, status 2
    assert "Usage: icdsl" in _same(server, "--help").stdout


def test_a_failing_check_has_the_same_status_and_message(server, tmp_path):
    project = tmp_path / "broken"
    shutil.copytree(EXAMPLE, project)
    rules = sorted(project.glob("*.icd"))[0]
    rules.write_text(rules.read_text(encoding="utf-8") + "\npartner {\n", encoding="utf-8")
    server.start()
    done = _same(server, "check", str(project))
    assert done.returncode == 1 and "failed: " in done.stdout


def test_stdin_is_the_clients(server, tmp_path):
    server.start()
    args = ("rate", ".", "--cdrs", "/dev/stdin", "--out", str(tmp_path / "out"))
    done = _same(server, *args, stdin_file=EXAMPLE / "traffic.csv")  # `icdsl rate ... < traffic.csv`
    assert done.returncode == 0 and "read 38 = rated 28" in done.stdout
    piped = _same(server, *args, input=(EXAMPLE / "traffic.csv").read_text(encoding="utf-8"))  # `cat ... |`
    assert piped.returncode == 1 and piped.stderr == "error: cannot read stdin: lseek failed\n"


def test_off_and_in_process_commands_are_not_served(server):
    server.start()
    before = server.status()["served"]
    assert server.icdsl("check", ".", served=False).returncode == 0
    assert server.icdsl("server", "status").returncode == 0  # `icdsl server ...` always runs in-process
    assert server.status()["served"] == before


def test_the_folder_is_private_and_a_foreign_one_is_refused(server, monkeypatch):
    server.start()
    folder = server.folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    sock = folder / f"{launcher._key()}.sock"
    assert stat.S_ISSOCK(sock.lstat().st_mode) and stat.S_IMODE(sock.lstat().st_mode) == 0o600
    server.icdsl("server", "stop")
    folder.chmod(0o755)  # open to others: refused, the command runs in-process all the same
    done = server.icdsl("server", "start")
    assert done.returncode == 1 and "is open to others (mode 755, want 700)" in done.stderr
    assert server.icdsl("check", ".").returncode == 0
    folder.chmod(0o700)
    server.start()
    monkeypatch.setenv(launcher.ENV_DIR, str(folder))
    real = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real + 1)  # the folder and socket as another user's
    with pytest.raises(launcher.Unavailable, match="belongs to another user"):
        launcher.private_dir(create=False)
    with pytest.raises(launcher.Unavailable, match="is not this user's socket"):
        launcher.connect(str(folder))


def test_stale_code_is_never_run(server, tmp_path):
    """A copy of icdsl (on PYTHONPATH) served, then its version changed: the next command runs the
    new code in-process and the stale server stops."""
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "icdsl", copy / "icdsl", ignore=shutil.ignore_patterns("__pycache__"))
    for data in ("grammar", "stdlib_rules"):
        shutil.copytree(ROOT / data, copy / data)
    server.env["PYTHONPATH"] = str(copy)
    python = [sys.executable, "-m", "icdsl.cli.launcher"]
    started = server.icdsl("server", "start", python=python)
    assert started.returncode == 0, started.stderr
    state = server.folder / (launcher._key(str(copy / 'icdsl')) + '.json')
    pid = json.loads(state.read_text())["pid"]
    assert server.icdsl("version", python=python).stdout.startswith("icdsl 0.1.0")
    init = copy / "icdsl" / "__init__.py"
    init.write_text(init.read_text(encoding="utf-8").replace('"0.1.0"', '"0.1.1"'), encoding="utf-8")
    assert server.icdsl("version", python=python).stdout.startswith("icdsl 0.1.1")
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid) and not state.exists()


def test_stop_leaves_no_process(server):
    pid = server.start()["pid"]
    done = server.icdsl("server", "stop")
    assert done.stdout.strip() == f"server stopped (pid {pid})"
    assert _gone(pid)
    assert not list(server.folder.glob("*.sock")) and not list(server.folder.glob("*.json"))
    assert server.icdsl("server", "status").returncode == 1
    assert server.icdsl("server", "stop").stdout.strip() == "no server running"


def _wait_running(server: Server, n: int) -> dict:
    deadline = time.monotonic() + 30
    while (found := server.status())["running"] != n:
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    return found


def _blocked(server: Server, tmp_path: Path, served: bool, **kw) -> subprocess.Popen:
    """`icdsl --plugin block.py check .`, whose plugin waits for a line on stdin (a pipe kept
    open): started, and blocked in the read."""
    mark = tmp_path / "reading"
    mark.unlink(missing_ok=True)
    plugin = tmp_path / "block.py"
    plugin.write_text(f"import pathlib, sys\npathlib.Path({str(mark)!r}).write_text('x')\nsys.stdin.readline()\n",
                      encoding="utf-8")
    env = dict(server.env, ICDSL_SERVER="1" if served else "0")
    client = subprocess.Popen([ICDSL, "--plugin", str(plugin), "check", "."], cwd=EXAMPLE, env=env,
                              stdin=subprocess.PIPE, text=True, **kw)
    deadline = time.monotonic() + 60
    while not mark.exists():
        assert time.monotonic() < deadline and client.poll() is None
        time.sleep(0.02)
    return client


def test_ctrl_c_is_forwarded_and_a_killed_client_ends_its_child(server, tmp_path):
    server.start()
    # Ctrl-C: the served command is interrupted as the process is
    said = []
    for served in (False, True):
        client = _blocked(server, tmp_path, served, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        client.send_signal(signal.SIGINT)
        client.wait(timeout=30)  # stdin still open: the read ends by the signal, not at the end of its input
        said.append((client.returncode, client.stdout.read(), client.stderr.read()))
        for stream in (client.stdin, client.stdout, client.stderr):
            stream.close()
    assert said[0] == said[1] and said[0][0] == 130, said
    _wait_running(server, 0)
    # a client killed (no chance to forward anything): the server ends its child
    served = server.status()["served"]
    client = _blocked(server, tmp_path, True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert server.status()["running"] == 1
    client.kill()
    client.wait(timeout=30)
    found = _wait_running(server, 0)
    assert found["served"] == served + 1
    client.stdin.close()
    # the server survived both, and serves the next command
    assert _same(server, "check", ".").returncode == 0


def test_auto_starts_a_server_for_the_next_commands(server):
    done = server.icdsl("check", ".", env={"ICDSL_SERVER": "auto"})
    assert done.returncode == 0 and "ok: " in done.stdout
    deadline = time.monotonic() + 60
    while server.icdsl("server", "status").returncode != 0:
        assert time.monotonic() < deadline, "no server was started"
        time.sleep(0.2)
    before = server.status()["served"]
    assert server.icdsl("check", ".", env={"ICDSL_SERVER": "auto"}).returncode == 0
    assert server.status()["served"] == before + 1


def test_the_console_script_is_the_tiny_launcher():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'icdsl = "icdsl.cli.launcher:main"' in text
    probe = ("import json, sys; import icdsl.cli.launcher; "
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('icdsl', 'typer', 'click', 'numpy', 'pyarrow', 'rich', 'subprocess', 'threading', 'hashlib'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(done.stdout) == ["icdsl", "icdsl.cli", "icdsl.cli.launcher"]
    # without a server, the launcher runs the command line in-process; `python -m icdsl.cli.main` too
    for cmd in ([ICDSL], [sys.executable, "-m", "icdsl.cli.main"], [sys.executable, "-m", "icdsl.cli.launcher"]):
        done = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, ICDSL_SERVER="1", ICDSL_SERVER_DIR="/nonexistent/icdsl"))
        assert done.returncode == 0 and done.stdout.startswith("icdsl "), (cmd, done.stderr)


def test_a_crashing_command_is_one_failed_command_not_the_servers_end(server, tmp_path):
    """A child killed by a signal (here a plugin that kills itself, as a crash in a native library
    would): the client dies of the same signal, as the process would, and the server goes on."""
    plugin = tmp_path / "crash.py"
    plugin.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGABRT)\n", encoding="utf-8")
    pid = server.start()["pid"]
    done = _same(server, "--plugin", str(plugin), "check", ".")
    assert done.returncode == -signal.SIGABRT
    found = server.status()
    assert found["pid"] == pid and found["running"] == 0
    assert _same(server, "check", ".").returncode == 0


def _on_a_terminal(server: Server, served: bool, *args: str) -> tuple[int, bytes]:
    """`icdsl ARGS` on a pseudo-terminal of 97 columns: its status and every byte it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 97, 0, 0))
    env = {k: v for k, v in server.env.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")}
    env.update(ICDSL_SERVER="1" if served else "0", TERM="xterm-256color")
    client = subprocess.Popen([ICDSL, *args], cwd=EXAMPLE, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every holder of the terminal's other end has closed it
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return client.wait(timeout=60), bytes(out)


def test_on_a_terminal_colours_and_width_are_the_terminals(server):
    server.start()
    before = server.status()["served"]
    here = _on_a_terminal(server, False, "--help")
    there = _on_a_terminal(server, True, "--help")
    assert server.status()["served"] == before + 1
    assert here == there
    assert b"\x1b[" in here[1]  # coloured: the command saw a terminal
    assert max(len(line) for line in re.sub(rb"\x1b\[[0-9;]*m", b"", here[1]).decode().splitlines()) == 97
