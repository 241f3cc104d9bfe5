"""Read a W&B run's `.wandb` transaction log back, to check what a job logged (offline mode, no server).

Older wandb shipped a Python reader (`wandb.sdk.internal.datastore.DataStore.scan_data`); wandb ≥ 0.19 moved it
into the Go core. The format is unchanged: a 7-byte file header (":W&B", magic 0xBEE1, version 0), then LevelDB
log blocks of 32 KiB; each chunk has a 7-byte header (CRC32 seeded with the chunk type, length, type) and chunks
of type FIRST/MIDDLE/LAST join into one record. Each record is a `wandb_internal_pb2.Record`.
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

HEADER = struct.Struct("<4sHB")          # ident, magic, version
CHUNK = struct.Struct("<IHB")            # crc32, length, type
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
TYPE_CRC = [zlib.crc32(bytes([t])) for t in range(5)]


class CorruptLog(ValueError):
    pass


def scan_data(path: Path) -> Iterator[bytes]:
    """The raw records of a `.wandb` file, checksums verified."""
    data = Path(path).read_bytes()
    if len(data) < HEADER.size:
        raise CorruptLog(f"{path}: {len(data)} bytes, no W&B header (the run wrote nothing)")
    ident, magic, version = HEADER.unpack_from(data)
    if ident != b":W&B" or magic != 0xBEE1 or version != 0:
        raise CorruptLog(f"{path}: not a W&B log (header {ident!r}, {magic:#x}, {version})")
    index, pending = HEADER.size, b""
    while index < len(data):
        if BLOCK - index % BLOCK < CHUNK.size:          # the rest of a block too short for a header is padding
            index += BLOCK - index % BLOCK
            continue
        if index + CHUNK.size > len(data):
            break
        checksum, length, kind = CHUNK.unpack_from(data, index)
        if checksum == 0 and length == 0 and kind == 0:   # zero padding at the end of a block
            index += BLOCK - index % BLOCK
            continue
        payload = data[index + CHUNK.size: index + CHUNK.size + length]
        if len(payload) != length or kind not in (FULL, FIRST, MIDDLE, LAST):
            raise CorruptLog(f"{path}: truncated or unknown chunk at offset {index}")
        if zlib.crc32(payload, TYPE_CRC[kind]) & 0xFFFFFFFF != checksum:
            raise CorruptLog(f"{path}: checksum mismatch at offset {index}")
        index += CHUNK.size + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        else:
            yield pending + payload
            pending = b""


def records(path: Path) -> list[Any]:
    """Every record of a `.wandb` file, parsed as `wandb_internal_pb2.Record`."""
    from wandb.proto import wandb_internal_pb2

    parsed = []
    for raw in scan_data(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        parsed.append(record)
    return parsed


def history(path: Path) -> list[dict[str, Any]]:
    """The logged history rows ({key: value}), in order; values decoded from their JSON form."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({(item.key or "/".join(item.nested_key)): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def summary(path: Path) -> dict[str, Any]:
    """The run's summary as W&B keeps it (its summary records applied in order): {key: value}, where a metric with a
    define_metric aggregate holds {"min": ...}, and media hold their {"_type", "path", ...} entry."""
    result: dict[str, Any] = {}
    for record in records(path):
        if record.WhichOneof("record_type") != "summary":
            continue
        for item in record.summary.update:
            *parents, key = [item.key] if item.key else list(item.nested_key)
            node = result
            for parent in parents:
                node = node.setdefault(parent, {})
            node[key] = json.loads(item.value_json)
        for item in record.summary.remove:
            *parents, key = [item.key] if item.key else list(item.nested_key)
            node = result
            for parent in parents:
                node = node.get(parent, {})
            node.pop(key, None)
    return result


def run_file(job_dir: Path) -> Path:
    """The single `.wandb` file a job wrote under job_dir/wandb."""
    found = sorted(Path(job_dir, "wandb").glob("*run-*/run-*.wandb"))
    found = [p for p in found if not p.parent.is_symlink()]
    if len(found) != 1:
        raise AssertionError(f"expected one .wandb file under {job_dir}/wandb, found {found}")
    return found[0]


class Run:
    """What one offline run logged: its run record (group, job type), history rows, summary and tables."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        found = sorted(self.dir.glob("run-*.wandb"))
        if len(found) != 1:
            raise AssertionError(f"expected one run-*.wandb file in {self.dir}, found {found}")
        self.file = found[0]
        self.records = records(self.file)
        runs = [r.run for r in self.records if r.WhichOneof("record_type") == "run"]
        if not runs:
            raise AssertionError(f"{self.file} holds no run record")
        self.run = runs[0]
        self.history = history(self.file)
        self.summary = summary(self.file)

    @property
    def group(self) -> str:
        return self.run.run_group

    @property
    def job_type(self) -> str:
        return self.run.job_type

    @property
    def id(self) -> str:
        return self.run.run_id

    @property
    def artifacts(self) -> list[Any]:
        """The artifacts the run logged (`ArtifactRecord`s: type, name, manifest.contents with path, digest, size)."""
        return [r.artifact for r in self.records if r.WhichOneof("record_type") == "artifact"]

    def table(self, key: str) -> dict[str, Any]:
        """The last table logged under `key` ({"columns": [...], "data": [[...], ...]}), read from the run's files."""
        paths = [row[f"{key}/path"] for row in self.history if row.get(f"{key}/_type") == "table-file"]
        if not paths:
            raise AssertionError(f"no table {key!r} in the history of {self.file}")
        return json.loads((self.dir / "files" / paths[-1]).read_text())


def read_run(run_dir: Path) -> Run:
    """The run in an `offline-run-*` (or `run-*`) folder."""
    return Run(run_dir)
