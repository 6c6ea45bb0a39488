"""Load a set of rule files: find them, follow ``use`` imports, parse each file once.

Paths named in rule files (imports, rate decks) are resolved relative to the file that names
them and must stay inside the project root: an agreement can never read ``/etc/passwd`` or
``../../secrets.csv``. The root is the folder given on the command line (or the folder of the
file given), unless set explicitly.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from icdsl.lang import ast
from icdsl.lang.diagnostics import Diagnostic, SourceCache, suggest
from icdsl.lang.parser import parse_file, parse_text
from icdsl.lang.values import short_text
from icdsl.spans import Span

RULE_SUFFIX = ".icd"


def stdlib_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "stdlib_rules", here / "_stdlib_rules"):
        if candidate.is_dir():
            return candidate
    return here.parent / "stdlib_rules"


def display_path(p: Path) -> str:
    """A short path for messages: relative to the working folder when inside it."""
    try:
        return os.path.relpath(p)
    except ValueError:
        return str(p)


@dataclass
class Program:
    root: Path
    files: list[ast.File] = field(default_factory=list)
    sources: SourceCache = field(default_factory=SourceCache)
    hashes: dict[str, str] = field(default_factory=dict)  # display path -> sha256 of the text
    texts: dict[str, str] = field(default_factory=dict)
    real_paths: dict[str, Path] = field(default_factory=dict)
    entry: list[str] = field(default_factory=list)  # display paths of the files asked for (not imports)

    def path_of(self, display: str) -> Path:
        return self.real_paths[display]


def inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _show_folder(root: Path) -> str:
    """The project folder as a user would write it: relative to the working folder if inside it."""
    try:
        rel = root.resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        return str(root)
    return "the current folder" if str(rel) == "." else str(rel)


# What file systems accept (Linux, macOS, Windows): a name of at most 255 bytes, a path of at
# most 4096; rule files keep well inside.
MAX_NAME_BYTES = 255
MAX_PATH_CHARS = 1024


def path_problem(name: str) -> str | None:
    """Why a path written in a rule file cannot name a file on any system, or None."""
    if not name:
        return "the path is empty"
    odd = next((c for c in name if ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000), None)
    if odd is not None:
        return f"the path '{short_text(name)}' contains the control character U+{ord(odd):04X}"
    if len(name) > MAX_PATH_CHARS:
        return f"the path '{short_text(name)}' is too long: paths have at most {MAX_PATH_CHARS} characters"
    for part in name.replace("\\", "/").split("/"):
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            return (f"the name '{short_text(part)}' in this path is too long: a file or folder name has at most "
                    f"{MAX_NAME_BYTES} bytes")
    return None


def path_help(name: str, usual: str) -> str:
    """The help line of an unusable path: ``usual`` unless the path itself is malformed."""
    if path_problem(name) is None or not name:
        return usual
    return "rename the file (or folder) so that its path is short plain text, and write that path here"


def is_file(p: Path) -> bool:
    """``p.is_file()``, False for a path the system cannot look up (too long, a loop of links)."""
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False


def resolve_project_path(name: str, base: Path, root: Path) -> tuple[Path | None, str | None]:
    """Resolve a path written in a rule file. Returns (path, None) or (None, reason)."""
    problem = path_problem(name)
    if problem:
        return None, problem
    if name.startswith("/") or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
        return None, "absolute paths are not allowed in rule files; write the path relative to this file"
    p = (base / name)
    if not inside(p, root) and not inside(p, stdlib_dir()):
        return None, f"'{short_text(name)}' is outside the project folder ({_show_folder(root)})"
    return p, None


def collect(paths: list[Path]) -> tuple[list[Path], list[Diagnostic]]:
    files, diags = [], []
    for p in paths:
        if p.is_dir():
            found = sorted(q for q in p.rglob(f"*{RULE_SUFFIX}") if q.is_file())
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            diags.append(Diagnostic("E003", f"no such file or folder: {p}", Span(str(p), 0, 0, 0, 0),
                                    "check the path; rule files end in .icd"))
    return files, diags


def default_root(paths: list[Path]) -> Path:
    dirs = [(p if p.is_dir() else p.parent).resolve() for p in paths if p.exists()]
    if not dirs:
        return Path.cwd().resolve()
    return Path(os.path.commonpath([str(d) for d in dirs]))


def load(paths: list[Path | str], root: Path | str | None = None,
         overlay: dict[Path, str] | None = None) -> tuple[Program, list[Diagnostic]]:
    """Find, read and parse the rule files and what they import. ``overlay``: texts to use
    instead of the files' contents on disk, by path (an editor's unsaved buffers)."""
    ps = [Path(p) for p in paths]
    real_overlay = {Path(p).resolve(): t for p, t in (overlay or {}).items()}
    root_path = Path(root).resolve() if root else default_root(ps)
    prog = Program(root=root_path)
    files, diags = collect(ps)
    seen: set[Path] = set()
    queue: list[tuple[Path, bool]] = [(f, True) for f in files]
    while queue:
        path, is_entry = queue.pop(0)
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
        shown = display_path(path)
        if real in real_overlay:
            text = real_overlay[real]
            f, ds = parse_text(text, shown)
        else:
            f, text, ds = parse_file(path, shown)
        diags.extend(ds)
        if text is not None:
            prog.sources.add(shown, text)
            prog.texts[shown] = text
            prog.hashes[shown] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        prog.real_paths[shown] = real
        if is_entry:
            prog.entry.append(shown)
        if f is None:
            continue
        prog.files.append(f)
        for use in f.uses:
            target, problem = _resolve_use(use, path, root_path)
            if problem:
                diags.append(Diagnostic("E401" if use.is_path else "E101", problem, use.span,
                                        path_help(use.target, _use_help(use)) if use.is_path else _use_help(use)))
            elif target is not None:
                queue.append((target, False))
    return prog, diags


def _use_help(use: ast.Use) -> str:
    if use.is_path:
        return "imports are paths relative to this file, inside the project folder"
    names = sorted(p.stem for p in stdlib_dir().glob(f"*{RULE_SUFFIX}"))

    best = suggest(use.target.removeprefix("stdlib."), names)
    if best:
        return f"did you mean 'stdlib.{best}'?"
    return "the standard library has: " + ", ".join(f"stdlib.{n}" for n in names)


def _resolve_use(use: ast.Use, importer: Path, root: Path) -> tuple[Path | None, str | None]:
    if use.is_path:
        p, problem = resolve_project_path(use.target, importer.parent, root)
        if problem:
            return None, problem
        if not is_file(p):
            return None, f"cannot find '{short_text(use.target)}' (looked for {short_text(display_path(p), 80)})"
        return p, None
    parts = use.target.split(".")
    if parts[0] != "stdlib" or len(parts) != 2:
        return None, f"unknown library '{short_text(use.target)}': write 'use stdlib.NAME' or 'use \"path/to/file.icd\"'"
    p = stdlib_dir() / f"{parts[1]}{RULE_SUFFIX}"
    if not is_file(p):
        return None, f"the standard library has no '{short_text(parts[1])}'"
    return p, None
