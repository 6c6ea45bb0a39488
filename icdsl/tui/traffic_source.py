"""Where simulated traffic comes from, headless: a traffic file of the folder, or generated.

Generated traffic wraps ``icdsl.demo.generate`` (the month of March 2026 for the example partners
LUMFR, BRKGB, CPX and FLTX, with ~0.7 % bad rows on purpose), which reads the example
interconnect decks (``interconnect/decks/...``). It is used when the folder is, or contains, the
interconnect example. Otherwise the folder's own traffic files are resampled (rows drawn with
replacement, fresh ids, same columns and timestamps). Either way only the chosen partners'
rows are kept, and ``mix`` (``voice=6,sms=3,data=1``) redraws the rows so that services come
in those proportions.

The rows are written as CSV chunks of :data:`CHUNK_ROWS` (one intake batch each, so that a
simulation can be cancelled between chunks), cached under the session's scratch folder by
their parameters: generating a million records once serves every later simulation and what-if.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from icdsl import demo
from icdsl.rating.records import RecordReader
from icdsl.rating.run import LayoutError, choose_layout
from icdsl.tui.project import Project

CHUNK_ROWS = 250_000
DECK = Path("interconnect/decks/lumiere-a-z.csv")  # what icdsl.demo.generate reads first


class Cancelled(Exception):
    """The analyst cancelled the run."""


@dataclass(frozen=True)
class TrafficSource:
    kind: str = "generated"  # "generated" | "file"
    path: Path | None = None  # the traffic file (kind "file")
    records: int = 5000
    mix: str = ""  # "voice=6,sms=3,data=1"; empty: as generated
    seed: int = 2026

    def describe(self, project: Project | None = None) -> str:
        if self.kind == "file" and self.path is not None:
            return project.shown(self.path) if project is not None else self.path.name
        return f"{self.records:,} generated records" + (f" (mix {self.mix})" if self.mix.strip() else "")


def parse_mix(text: str) -> dict[str, float]:
    """``"voice=6, sms=3,data=1"`` -> weights by service; raises ValueError on bad input."""
    out: dict[str, float] = {}
    for item in text.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, weight = item.partition("=")
        name = name.strip()
        try:
            w = float(weight) if sep else 1.0
        except ValueError:
            raise ValueError(f"mix: '{item}' is not SERVICE=WEIGHT (e.g. voice=6,sms=3)") from None
        if not name or w < 0 or not math.isfinite(w):
            raise ValueError(f"mix: '{item}' is not SERVICE=WEIGHT (e.g. voice=6,sms=3)")
        out[name] = out.get(name, 0.0) + w
    if out and sum(out.values()) <= 0:
        raise ValueError("mix: the weights add up to 0")
    return out


@contextlib.contextmanager
def demo_root(folder: Path) -> Iterator[Path | None]:
    """The folder to give ``icdsl.demo.generate`` (it reads ``interconnect/decks/...``): the
    folder or its parent, or, for a copy of the interconnect example under another name, a
    temporary folder with a link named ``interconnect`` to it. None if the decks are not there."""
    for root in (folder, folder.parent):
        if (root / DECK).is_file():
            yield root
            return
    if (folder / DECK.relative_to("interconnect")).is_file():
        with tempfile.TemporaryDirectory(prefix="icdsl-gen-") as tmp:
            (Path(tmp) / "interconnect").symlink_to(folder, target_is_directory=True)
            yield Path(tmp)
        return
    yield None


def _never() -> bool:
    return False


def prepare_traffic(project: Project, plan: Any, source: TrafficSource, partners: list[str], scratch: Path, *,
                    progress: Callable[[str, int, int], None] | None = None,
                    cancelled: Callable[[], bool] = _never) -> list[Path]:
    """The traffic files of a simulation: the chosen file, or generated chunks (cached)."""
    progress = progress or (lambda *_: None)
    if source.kind == "file":
        if source.path is None or not Path(source.path).is_file():
            raise ValueError(f"no traffic file {source.path}")
        return [Path(source.path)]
    key = json.dumps({"records": source.records, "mix": source.mix.strip(), "seed": source.seed,
                      "partners": sorted(partners), "folder": str(project.folder),
                      "decks": _fingerprint(project)}, sort_keys=True)
    folder = scratch / f"traffic-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    manifest = folder / "manifest.json"
    if manifest.is_file():
        files = [folder / n for n in json.loads(manifest.read_text())["files"]]
        if all(f.is_file() for f in files):
            progress("traffic ready (generated before)", 1, 1)
            return files
    progress(f"generating {source.records:,} records", 0, source.records)
    table = generate_table(project, source, partners)
    if cancelled():
        raise Cancelled()
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    n = max(1, math.ceil(table.num_rows / CHUNK_ROWS))
    for i, chunk in enumerate(_chunks(table, CHUNK_ROWS)):
        progress("writing generated traffic", i, n)
        files.append(_write_csv(chunk, folder / f"generated-{i + 1:03d}.csv"))
        if cancelled():
            raise Cancelled()
    manifest.write_text(json.dumps({"files": [f.name for f in files], "rows": table.num_rows}))
    return files


def _fingerprint(project: Project) -> list[tuple[str, int, int]]:
    files = project.files()
    out = []
    for p in files.decks + files.traffic:
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return out


def _chunks(table: pa.Table, rows: int) -> Iterator[pa.Table]:
    for start in range(0, max(table.num_rows, 1), rows):
        yield table.slice(start, rows)


def _write_csv(table: pa.Table, path: Path) -> Path:
    tmp = path.with_suffix(".tmp")
    pcsv.write_csv(table, tmp, pcsv.WriteOptions(quoting_style="needed"))
    tmp.replace(path)
    return path


def generate_table(project: Project, source: TrafficSource, partners: list[str]) -> pa.Table:
    """The generated rows of ``partners`` (see the module), as text columns."""

    mix = parse_mix(source.mix)
    with demo_root(project.folder) as root:
        wanted = [p for p in partners if p in demo.SHARES] if root is not None else []
        if wanted:
            share = sum(demo.SHARES[p] for p in wanted)
            pool = demo.generate(root, max(10, math.ceil(source.records / share)), source.seed)
            pool = pool.filter(pc.is_in(pool.column("partner"), value_set=pa.array(wanted)))
        else:
            pool = _resampled_files(project, partners, source.records, source.seed)
    if mix:
        pool = _remix(pool, mix, source.records, source.seed)
    elif pool.num_rows > source.records:
        pool = pool.slice(0, source.records)
    return pool


def _resampled_files(project: Project, partners: list[str], records: int, seed: int) -> pa.Table:
    """Rows of the folder's traffic files drawn with replacement, with fresh ids."""

    tables = []
    for p in project.files().traffic:
        try:
            if p.suffix.lower() == ".csv":
                t = pcsv.read_csv(p, convert_options=pcsv.ConvertOptions(
                    column_types={}, strings_can_be_null=True, auto_dict_encode=False))
                t = t.cast(pa.schema([(f.name, pa.string()) for f in t.schema]))
            else:
                t = pq.read_table(p)
                t = pa.table({n: pc.cast(t.column(n), pa.string()) for n in t.column_names})
        except (OSError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        if "partner" in t.column_names:
            t = t.filter(pc.is_in(t.column("partner"), value_set=pa.array(partners)))
        if t.num_rows:
            tables.append(t)
    if not tables:
        raise ValueError("nothing to generate traffic from: the folder is not the interconnect example and "
                         "its traffic files have no rows of the chosen partners; choose a traffic file")
    pool = pa.concat_tables(tables, promote_options="permissive")
    rng = np.random.default_rng(seed)
    pool = pool.take(pa.array(rng.integers(0, pool.num_rows, records)))
    return _fresh_ids(pool, "SIM")


def _fresh_ids(table: pa.Table, prefix: str) -> pa.Table:
    ids = pa.array([f"{prefix}-{i:08d}" for i in range(table.num_rows)], pa.string())
    if "id" in table.column_names:
        return table.set_column(table.column_names.index("id"), "id", ids)
    return table.append_column("id", ids)


def _remix(pool: pa.Table, mix: dict[str, float], records: int, seed: int) -> pa.Table:
    """``records`` rows drawn from ``pool`` so that services follow ``mix`` (bad rows kept)."""
    rng = np.random.default_rng(seed + 1)
    ids = pc.cast(pool.column("id"), pa.string())
    bad = pool.filter(pc.starts_with(ids, "BAD-"))
    good = pool.filter(pc.invert(pc.starts_with(ids, "BAD-")))
    service = good.column("service").to_numpy(zero_copy_only=False)
    total = sum(mix.values())
    picks = []
    missing = []
    for name, w in mix.items():
        n = round(records * w / total)
        rows = np.flatnonzero(service == name)
        if not len(rows):
            missing.append(name)
            continue
        if n:
            picks.append(rows[rng.integers(0, len(rows), n)])
    if not picks:
        raise ValueError(f"mix: the traffic has no {', '.join(missing)} records (it has "
                         f"{', '.join(sorted(set(service.tolist())))})")
    out = _fresh_ids(good.take(pa.array(np.concatenate(picks))), "MIX")
    keep = bad.slice(0, max(0, round(bad.num_rows * records / max(pool.num_rows, 1))))
    return pa.concat_tables([out, keep.cast(out.schema)]) if keep.num_rows else out


def read_records(paths: list[Path], plan: Any, partners: list[str] | None = None,
                 batch_rows: int = 250_000) -> Iterator[tuple[pa.Table, int]]:
    """The normalized records of traffic files (as intake would pass them), batch by batch, with
    the count of rows intake rejected; only ``partners``' records when given."""

    try:
        layout = choose_layout(plan, None)
    except LayoutError:
        layout = plan.layouts[0] if plan.layouts else None
    value_set = pa.array(partners, pa.string()) if partners else None
    for path in paths:
        reader = RecordReader(path, layout, batch_rows=batch_rows)
        for batch in reader.batches():
            records = batch.records
            if value_set is not None and "partner" in records.column_names:
                records = records.filter(pc.is_in(records.column("partner"), value_set=value_set))
            yield records, batch.rejects.num_rows
