"""Compiled plans kept between commands, keyed by what they were compiled from.

``icdsl check``, ``explain`` and ``rate`` compile the rule files every time they run: parsing,
checking and reading the decks (a 50,000-row deck takes most of a second). A plan that compiled
without errors is kept here and used again while nothing it was made from has changed:

- **the key** names the question: icdsl's version and code (the size and time of each of its
  source files, so an edited checkout never reads an old entry), Python's version, the
  installed plugins, the working folder (messages show paths relative to it), the paths asked
  for and the project root;
- **the entry** lists every file the compilation read (rule files, imports, decks, number-range
  tables, zones) with its size and SHA-256, and every folder it listed (where ``*.icd`` files
  were searched) with the names in it. An entry is used only if every one is unchanged: a deck
  edited, a rule file added to a folder, an import removed, each is a rebuild;
- **the file** is written atomically (a temporary file renamed over the entry) and signed:
  HMAC-SHA256 with a key of this user's cache (made on first use, readable only by them) over
  the header and the plan. A truncated, corrupt or foreign entry fails the check and is
  deleted and rebuilt, never unpickled.

The folder also keeps small JSON values derived from installed code alone (:func:`keep`,
:func:`read_kept`; e.g. a year of a country's holidays, so that a warm command does not import
``holidays``), signed the same way and named by :func:`kept_key` (icdsl's code and the installed
distributions are part of the name).

Only plans without errors are kept: a failed build is compiled again (its diagnostics are what
the user is working on, and a missing file is not a file that was read).

The files a compilation reads are observed, not listed by hand: an audit hook
(:func:`sys.addaudithook`) records the ``open`` and ``os.scandir`` events of the build, so a new
kind of input file is covered without a change here.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import os
import pickle
import secrets
import stat
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icdsl import __version__
from icdsl.lang.diagnostics import Diagnostic, SourceCache
from icdsl.spans import Span

FORMAT = 1
MAGIC = b"ICDSL-PLAN\x00"
ENV_DIR = "ICDSL_CACHE_DIR"
ENV_OFF = "ICDSL_PLAN_CACHE"  # "off" (or 0, no, false): compile every time
MAX_ENTRIES = 64  # the oldest entries beyond this are removed when one is written
_PACKAGE = Path(__file__).resolve().parent.parent


def enabled() -> bool:
    return os.environ.get(ENV_OFF, "").strip().lower() not in ("off", "0", "no", "false")


def cache_dir() -> Path:
    """``$ICDSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/icdsl/plans`` (``~/.cache/icdsl/plans``): the
    user's own folder, beside the parser's tables, never the project (a project folder may come
    from someone else: its cache would be their code)."""
    given = os.environ.get(ENV_DIR)
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "icdsl" / "plans"


# --------------------------------------------------------------------------- what a build reads


class _Recorder:
    """The files opened for reading and the folders listed while a build runs (one at a time:
    the lock makes recorded builds take turns; the hook is installed once and idle otherwise)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened: set[str] | None = None
        self.listed: set[str] | None = None
        self.installed = False

    def hook(self, event: str, args: tuple) -> None:
        if self.opened is None:
            return
        if event == "open":
            path, mode = args[0], args[1]
            if isinstance(path, (str, bytes, os.PathLike)) and (mode is None or "r" in str(mode)) \
                    and not any(c in str(mode or "") for c in "wax+"):
                self.opened.add(os.path.abspath(os.fsdecode(path)))
        elif event == "os.scandir":  # Path.rglob's listing (the import system's is os.listdir)
            path = args[0]
            if isinstance(path, (str, bytes, os.PathLike)):
                self.listed.add(os.path.abspath(os.fsdecode(path)))

    @contextlib.contextmanager
    def recording(self):
        with self.lock:
            if not self.installed:
                sys.addaudithook(self.hook)
                self.installed = True
            self.opened, self.listed = set(), set()
            try:
                yield self
            finally:
                self.opened_done, self.listed_done = self.opened, self.listed
                self.opened = self.listed = None


_recorder = _Recorder()


def _ignored_roots() -> tuple[str, ...]:
    """Where files read during a build are code, not input: Python's own folders and
    site-packages (imports happen lazily during a build), icdsl's package (its code is in the
    key) and the caches."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(_PACKAGE), str(cache_dir())}
    roots.update(p for p in sys.path if p and os.path.isdir(p) and ("site-packages" in p or "dist-packages" in p))
    return tuple(os.path.join(os.path.abspath(r), "") for r in roots)


_CODE_SUFFIXES = (".py", ".pyc", ".so", ".pyd", ".pth", ".lark-cache")


def _is_input(path: str, ignored: tuple[str, ...]) -> bool:
    return not path.endswith(_CODE_SUFFIXES) and not path.startswith(ignored) and os.path.isfile(path)


def _file_sig(path: str) -> tuple[int, str] | None:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    return len(data), hashlib.sha256(data).hexdigest()


def _listing(path: str) -> str | None:
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return None
    return hashlib.sha256("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()


# --------------------------------------------------------------------------- the key


def _tree_sig(folder: Path, suffixes: tuple[str, ...]) -> list[tuple[str, int, int]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(suffixes):
                with contextlib.suppress(OSError):
                    st = os.stat(os.path.join(dirpath, name))
                    out.append((os.path.relpath(os.path.join(dirpath, name), folder), st.st_size, st.st_mtime_ns))
    return out


def code_fingerprint() -> str:
    """icdsl's version and code (its modules and grammar), Python's version, and the names of the
    installed distributions (a plugin installed, removed or upgraded changes them)."""
    h = hashlib.sha256()
    h.update(f"{FORMAT}|{__version__}|{sys.version}|{sys.implementation.cache_tag}".encode())
    h.update(repr(_tree_sig(_PACKAGE, (".py", ".lark"))).encode())
    grammar = _PACKAGE.parent / "grammar"
    if grammar.is_dir():
        h.update(repr(_tree_sig(grammar, (".lark",))).encode())
    for p in sys.path:
        if p and ("site-packages" in p or "dist-packages" in p) and os.path.isdir(p):
            with contextlib.suppress(OSError):
                h.update("\n".join(sorted(n for n in os.listdir(p) if n.endswith((".dist-info", ".egg-info", ".pth")))
                                   ).encode())
    return h.hexdigest()


def _plugin_context() -> Any:
    """What plugins the build would use beyond the installed ones, or None when the build uses a
    manager made by a caller (a test's, a ``use_plugin_manager`` block): not cached then."""
    plugins = sys.modules.get("icdsl.plugins")
    if plugins is None:
        return []
    if plugins._active:
        return None
    return list(plugins._default_modules)


def cache_key(paths: list[Path], root: Path | None) -> str | None:
    extra = _plugin_context()
    if extra is None:
        return None
    if os.environ.get("ICDSL_DISABLE_PLUGIN_AUTOLOAD"):
        extra = [*extra, "<no autoload>"]
    question = {
        "code": code_fingerprint(),
        "cwd": os.getcwd(),
        "paths": [[str(p), os.path.abspath(p)] for p in paths],
        "root": None if root is None else os.path.abspath(root),
        "plugins": extra,
    }
    return hashlib.sha256(json.dumps(question, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- entries


def _secret(folder: Path) -> bytes:
    """This cache's signing key: made once, readable by its owner only."""
    path = folder / "key"
    try:
        data = path.read_bytes()
        if len(data) == 32:
            return data
    except OSError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    data = secrets.token_bytes(32)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".key-")
    try:
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
        os.write(fd, data)
        os.close(fd)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path.read_bytes()


def _diag_to_dict(d: Diagnostic) -> dict:
    s = d.span
    return {"code": d.code, "message": d.message, "help": d.help, "severity": d.severity,
            "span": [s.file, s.line, s.col, s.end_line, s.end_col]}


def _diag_from_dict(d: dict) -> Diagnostic:
    return Diagnostic(d["code"], d["message"], Span(*d["span"]), d["help"], d["severity"])


@dataclass
class Entry:
    """A plan as kept: what it was compiled from and its warnings. ``plan()`` unpickles it (the
    header alone answers ``icdsl check``, without loading the plan's modules)."""

    diagnostics: list[Diagnostic]
    sources: dict[str, str]  # display path -> real path, of the rule files (for rendering)
    entry_count: int
    texts: dict[str, str] = field(default_factory=dict)
    payload: bytes = b""

    def plan(self) -> Any:
        return pickle.loads(self.payload)

    def source_cache(self) -> SourceCache:
        cache = SourceCache()
        for shown, text in self.texts.items():
            cache.add(shown, text)
        return cache


def _pack(header: dict, payload: bytes, secret: bytes) -> bytes:
    head = json.dumps(header, sort_keys=True).encode()
    body = len(head).to_bytes(8, "big") + head + payload
    return MAGIC + hmac.new(secret, body, hashlib.sha256).digest() + body


def _unpack(data: bytes, secret: bytes) -> tuple[dict, bytes] | None:
    """(header, payload) of a well-formed entry signed with this cache's key, or None."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 32 + 8:
        return None
    mac, body = data[len(MAGIC):len(MAGIC) + 32], data[len(MAGIC) + 32:]
    if not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()):
        return None
    n = int.from_bytes(body[:8], "big")
    if n > len(body) - 8:
        return None
    try:
        header = json.loads(body[8:8 + n])
    except ValueError:
        return None
    payload = body[8 + n:]
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("payload_len") != len(payload) \
            or header.get("payload_sha256") != hashlib.sha256(payload).hexdigest():
        return None
    return header, payload


class PlanCache:
    """The entries of one cache folder. ``stats`` counts hits, misses and rejected entries (the
    tests and ``ICDSL_DEBUG`` read them)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or cache_dir()
        self.stats = {"hit": 0, "miss": 0, "stale": 0, "corrupt": 0, "stored": 0}

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.plan"

    def get(self, key: str) -> Entry | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except OSError:
            self.stats["miss"] += 1
            return None
        unpacked = _unpack(data, _secret(self.folder))
        if unpacked is None:
            self.stats["corrupt"] += 1
            self._discard(path)
            return None
        header, payload = unpacked
        texts: dict[str, str] = {}
        real_to_shown = {real: shown for shown, real in header["sources"].items()}
        for real, size, sha in header["files"]:
            sig = _file_sig(real)
            if sig != (size, sha):
                self.stats["stale"] += 1
                return None
            shown = real_to_shown.get(real)
            if shown is not None:
                texts[shown] = Path(real).read_bytes().decode("utf-8", errors="replace")
        for folder, sig in header["folders"]:
            if _listing(folder) != sig:
                self.stats["stale"] += 1
                return None
        self.stats["hit"] += 1
        return Entry([_diag_from_dict(d) for d in header["diagnostics"]], header["sources"],
                     header["entry_count"], texts, payload)

    def put(self, key: str, plan: Any, program: Any, diags: list[Diagnostic], opened: set[str],
            listed: set[str]) -> bool:
        try:
            payload = pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - a plugin's object that cannot be pickled: just not kept
            return False
        ignored = _ignored_roots()
        files = []
        for path in sorted(opened):
            if _is_input(path, ignored):
                sig = _file_sig(path)
                if sig is None:
                    return False
                files.append([path, *sig])
        real_sources = {shown: str(real) for shown, real in program.real_paths.items()}
        if any(real not in {f[0] for f in files} for real in real_sources.values()):
            return False  # a rule file not seen being read (an overlay): nothing to verify it by
        folders = []
        for path in sorted(listed):
            sig = _listing(path)
            if sig is None:
                return False
            folders.append([path, sig])
        header = {"format": FORMAT, "files": files, "folders": folders, "sources": real_sources,
                  "entry_count": len(program.entry), "diagnostics": [_diag_to_dict(d) for d in diags],
                  "payload_len": len(payload), "payload_sha256": hashlib.sha256(payload).hexdigest()}
        try:
            data = _pack(header, payload, _secret(self.folder))
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".entry-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path(key))
        except OSError:
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)
            return False
        self.stats["stored"] += 1
        self._prune()
        return True

    def _discard(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()

    def _prune(self) -> None:
        with contextlib.suppress(OSError):
            entries = sorted(self.folder.glob("*.plan"), key=lambda p: p.stat().st_mtime)
            for old in entries[:-MAX_ENTRIES]:
                self._discard(old)


# --------------------------------------------------------------------------- kept values


KEPT_MAX = 256  # the oldest kept values beyond this are removed when one is written


@functools.cache
def installed_fingerprint() -> str:
    """:func:`code_fingerprint` once per process (kept values are derived from installed code:
    what this process runs; a plan's key computes it afresh, as its sources may change)."""
    return code_fingerprint()


def kept_key(*parts: Any) -> str:
    """The name of a value derived from installed code and ``parts`` alone (e.g. a year of a
    country's holidays): icdsl's code and the installed distributions are part of it, so an
    upgrade of either is a new name."""
    return hashlib.sha256(json.dumps([installed_fingerprint(), *parts], default=str).encode()).hexdigest()


def read_kept(key: str, folder: Path | None = None) -> Any:
    """A JSON value written by :func:`keep` under ``key``, or None (cache off, absent, or not
    exactly as written: a corrupt or foreign file is deleted, never trusted)."""
    if not enabled():
        return None
    folder = folder or cache_dir()
    path = folder / f"{key}.kept"
    try:
        data = path.read_bytes()
        unpacked = _unpack(data, _secret(folder))
    except OSError:
        return None
    if unpacked is None or unpacked[0].get("key") != key:
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    try:
        return json.loads(unpacked[1])
    except ValueError:
        return None


def keep(key: str, value: Any, folder: Path | None = None) -> None:
    """Write a JSON value under ``key`` (atomically, signed as the plans are); a cache folder
    that cannot be written is no error: the value is derived again next time."""
    if not enabled():
        return
    folder = folder or cache_dir()
    payload = json.dumps(value, sort_keys=True).encode()
    header = {"format": FORMAT, "key": key, "payload_len": len(payload),
              "payload_sha256": hashlib.sha256(payload).hexdigest()}
    tmp = None
    try:
        data = _pack(header, payload, _secret(folder))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".kept-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, folder / f"{key}.kept")
        entries = sorted(folder.glob("*.kept"), key=lambda p: p.stat().st_mtime)
        for old in entries[:-KEPT_MAX]:
            old.unlink()
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@dataclass
class Built:
    """What a command needs of a build: the plan (None on errors), the diagnostics, the sources
    to render them with, and how many files were asked for. ``program`` is the loaded program
    when the build ran (None when the plan came from the cache)."""

    plan: Any
    diagnostics: list[Diagnostic]
    sources: SourceCache
    entry_count: int
    program: Any = None
    cached: bool = False
    _entry: Entry | None = None
    _rebuild: Any = None

    @property
    def ok(self) -> bool:
        return self._entry is not None or self.plan is not None

    def get_plan(self) -> Any:
        if self.plan is None and self._entry is not None:
            try:
                self.plan = self._entry.plan()
            except Exception:  # noqa: BLE001 - e.g. a plugin's class gone since: compile again
                self.plan = self._rebuild().plan
        return self.plan


def build_cached(paths: list[Path], root: Path | None = None, cache: PlanCache | None = None) -> Built:
    """:func:`icdsl.plan.compiler.build`, through the cache when it is on: an unchanged project
    is answered from its entry (the plan unpickled only when asked for, by ``get_plan``)."""
    key = cache_key(paths, root) if enabled() else None
    if key is not None:
        cache = cache or PlanCache()
        try:
            entry = cache.get(key)
        except OSError:  # an unreadable cache folder: compile as if there were none
            entry, key = None, None
        if entry is not None:
            return Built(None, entry.diagnostics, entry.source_cache(), entry.entry_count, cached=True,
                         _entry=entry, _rebuild=lambda: _build(paths, root, None, None))
    return _build(paths, root, key, cache)


def _build(paths: list[Path], root: Path | None, key: str | None, cache: PlanCache | None) -> Built:
    # lazy: compiling needs lark and the checker: loaded only when the cache cannot answer
    from icdsl.plan.compiler import build

    if key is None or cache is None:
        plan, program, diags = build(paths, root)
        return Built(plan, diags, program.sources, len(program.entry), program)
    with _recorder.recording() as rec:
        plan, program, diags = build(paths, root)
    if plan is not None:
        with contextlib.suppress(OSError):
            cache.put(key, plan, program, diags, rec.opened_done, rec.listed_done)
    return Built(plan, diags, program.sources, len(program.entry), program)
