"""Read an offline W&B run back from its files: the `.wandb` record log (LevelDB log format) and media files.

wandb 0.31 no longer ships a Python reader for its record log, so this is a small one: 32 KiB blocks of records,
each with a 7-byte header (crc32, length, type), large records split into FIRST/MIDDLE/LAST pieces.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

BLOCK, HEADER = 32 * 1024, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[bytes]:
    """The serialized protobuf records of a `.wandb` file, in order."""
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B record log"
    position, pieces = HEADER, b""
    while position + HEADER <= len(data):
        room = BLOCK - position % BLOCK
        if room < HEADER:             # the rest of a block too small for a header is padding
            position += room
            continue
        _, length, kind = struct.unpack("<IHB", data[position: position + HEADER])
        payload = data[position + HEADER: position + HEADER + length]
        position += HEADER + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pieces = payload
        elif kind == MIDDLE:
            pieces += payload
        elif kind == LAST:
            yield pieces + payload
        elif kind == 0 and length == 0:
            break


@dataclass
class OfflineRun:
    directory: Path
    group: str = ""
    job_type: str = ""
    run_id: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def values(self, key: str) -> list[Any]:
        return [row[key] for row in self.history if key in row]

    def table(self, key: str) -> dict[str, Any]:
        """A logged wandb.Table, read from its JSON file under files/."""
        entry = self.values(key)[-1]
        return json.loads((self.directory / "files" / entry["path"]).read_text())


def history_value(item: Any) -> Any:
    """A history item's value: newer wandb writes typed fields, older ones JSON text."""
    if item.value_json:
        return json.loads(item.value_json)
    kind = item.WhichOneof("value")
    if kind in (None, "none"):
        return None
    value = getattr(item, kind)
    return json.loads(value) if kind == "json" else value


def read_run(directory: Path) -> OfflineRun:
    """Everything a test needs from one `offline-run-*` folder."""
    from wandb.proto import wandb_internal_pb2 as pb

    directory = Path(directory)
    run = OfflineRun(directory)
    for data in records(next(directory.glob("*.wandb"))):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.group, run.job_type, run.run_id = record.run.run_group, record.run.job_type, record.run.run_id
            run.config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "config":
            run.config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:   # nested values (tables, images) arrive one leaf per item
                *parents, leaf = list(item.nested_key) or [item.key]
                node = row
                for key in parents:
                    node = node.setdefault(key, {})
                node[leaf] = history_value(item)
            run.history.append(row)
    return run
