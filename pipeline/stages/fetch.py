"""Fetch the data sets a sweep's jobs need once, here on the driver, before any job starts: concurrent jobs never
download into one folder at once, and a data set that cannot be had stops the sweep before Ray or any training."""
from __future__ import annotations

import dataclasses
import json

from omegaconf import OmegaConf

from pipeline.planned_job import Job


def downloading(jobs: list[Job]) -> list[Job]:
    """The jobs whose data may be downloaded (`data.download: true`)."""
    return [job for job in jobs if (job.config.get("data") or {}).get("download")]


def fetch_data(jobs: list[Job]) -> list[Job]:
    """Each distinct data config that may be downloaded is fetched (downloaded where missing, then read) here;
    its jobs then run with `download: false`, which is not part of a job id."""
    from pipeline.config import instantiate

    fetched: set[str] = set()
    ready = []
    for job in jobs:
        data = job.config.get("data") or {}
        if data.get("download"):
            key = json.dumps(data, sort_keys=True, default=str)
            if key not in fetched:
                instantiate(OmegaConf.create(data), "data").fetch()
                fetched.add(key)
            job = dataclasses.replace(job, config={**job.config, "data": {**data, "download": False}})
        ready.append(job)
    return ready
