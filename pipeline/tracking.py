"""A job's loggers (`logger=[wandb,csv]`: any Lightning logger), and Weights & Biases through Lightning's
WandbLogger. A W&B failure never stops training.

mode=auto logs online when an API key is configured and offline otherwise (said once per process); if an
online run cannot start (no network, bad key), the run falls back to offline with one warning.
"""
from __future__ import annotations

import logging
import netrc
import os
import re
import secrets
import socket
from pathlib import Path
from urllib.parse import urlparse
from typing import Any, Callable, Mapping, TypeVar

from pipeline.errors import one_line

T = TypeVar("T")

log = logging.getLogger(__name__)
_said: set[str] = set()


def say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.warning(message)


def api_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def server_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check of the W&B server, so that an unreachable one costs seconds, not wandb's init timeout."""
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def resolve_mode(mode: str) -> str:
    """'online', 'offline' or 'disabled'. A logger chosen in the config decides whether W&B runs at all: WANDB_MODE
    in the environment only picks online or offline (or disabled) for a W&B logger, never revives a disabled one."""
    if mode == "disabled":
        return mode
    mode = os.environ.get("WANDB_MODE") or mode
    if mode == "auto":
        mode = "online" if api_key_configured() else "offline"
        if mode == "offline":
            say_once("W&B: no API key configured, logging offline; upload later with "
                     "`wandb sync <job_dir>/wandb/offline-run-*`")
    if mode == "online" and not server_reachable():
        say_once("W&B server unreachable, logging offline; upload later with `wandb sync`")
        mode = "offline"
    return mode


def _release_wandb() -> None:
    """Stop W&B's background service: it flushes what it holds, and a failed start leaves no run id taken."""
    try:
        import wandb

        wandb.teardown()
    except Exception:  # noqa: BLE001
        pass


def start_with_fallback(start: Callable[[str], T], mode: str) -> T | None:
    """start(mode), falling back to offline once if an online start fails; None if W&B cannot start at all."""
    for attempt in dict.fromkeys((mode, "offline")):
        try:
            return start(attempt)
        except Exception as error:  # noqa: BLE001 - any W&B failure must leave the work running
            reason = one_line(error, 200)
            if attempt == "offline":
                say_once(f"W&B could not start ({reason}); going on without W&B")
                return None
            say_once(f"W&B online run failed ({reason}); logging offline instead")
            _release_wandb()
    return None


def init_run(mode: str, directory: Path | str, **fields: Any) -> Any:
    """wandb.init for a job's or a stage's run. Called directly rather than through WandbLogger's own init, which
    passes wandb a deprecated `anonymous` setting (a warning in every job) and sets WANDB_MODE in the process."""
    import wandb

    if os.environ.get("WANDB_MODE") == "":   # empty means unset (resolve_mode did so); wandb's Settings refuses it
        del os.environ["WANDB_MODE"]
    return wandb.init(dir=str(directory), mode=mode, reinit="create_new",
                      settings=wandb.Settings(silent=True, init_timeout=60), **fields)


def define_metrics(run: Any) -> None:
    """Lightning's x-axis for every metric (what WandbLogger sets up when it starts a run itself). The run summary
    holds the best validation error (the epoch early stopping keeps) as `val/error: {min: ...}`, not the last
    epoch's; its x-axis stays Lightning's trainer/global_step. The final FGSM curve (`eval/*`, logged once) is the
    summary's default, the last value: a `summary="last"` glob over it would also wrap the fields of the curve's
    table entry (`_type: {last: ...}`) in wandb 0.31, which W&B then cannot show."""
    run.define_metric("trainer/global_step")
    run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
    run.define_metric("val/error", step_metric="trainer/global_step", summary="min")


def curve_scalars(rows: list[dict[str, float]]) -> dict[str, float]:
    """The attack curve as one number per ε and measure (`eval/error_eps0.25`): columns of the W&B runs table."""
    return {f"eval/{name}_eps{row['eps']:g}": value for row in rows for name, value in row.items() if name != "eps"}


class JobLoggers:
    """A job's loggers, one per entry of its `logger` config (`logger=[wandb,csv]`), each built with
    `save_dir=<job dir>`: a Tracker starts its W&B run (and logs the results and model.pt at the end); any other
    entry is a Lightning logger as its `_target_` names it (CSVLogger, TensorBoardLogger, ...)."""

    def __init__(self) -> None:
        self.trackers: list[Tracker] = []

    def start(self, config: Mapping[str, Any] | None, job_dir: Path, name: str, run_id: str,
              job_config: dict[str, Any]) -> list:
        """The Lightning loggers for the Trainer (W&B's left out when it cannot start)."""
        from pipeline.config import instantiate

        loggers = []
        for key, entry in (config or {}).items():
            logger = instantiate(entry, f"logger.{key}", save_dir=str(job_dir))
            if isinstance(logger, Tracker):
                self.trackers.append(logger)
                logger = logger.start(name, run_id, job_config)
            if logger is not None:
                loggers.append(logger)
        return loggers

    def log_results(self, rows: list[dict[str, float]], summary: dict[str, Any], checkpoint: Path | None) -> None:
        for tracker in self.trackers:
            tracker.log_results(rows, summary, checkpoint)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()


class Tracker:
    """Creates the WandbLogger for a job and logs the final results; every call tolerates W&B failures."""

    def __init__(self, project: str = "harness", mode: str = "auto", entity: str | None = None,
                 group: str | None = None, job_type: str = "train", tags: list[str] | None = None,
                 log_checkpoint: bool = True, save_dir: str | None = None) -> None:
        self.project, self.mode, self.entity, self.group = project, mode, entity, group
        self.job_type, self.tags, self.log_checkpoint = job_type, list(tags or []), log_checkpoint
        self.save_dir = save_dir   # a job's directory: its run lands in <save_dir>/wandb
        self.logger = None

    def start(self, name: str, run_id: str, config: dict[str, Any]):
        """The Lightning logger for this job (None when disabled or when W&B cannot start at all)."""
        mode = resolve_mode(self.mode)
        if mode == "disabled":
            return None
        from pytorch_lightning.loggers import WandbLogger

        def start(attempt: str) -> WandbLogger:
            run = init_run(attempt, self.save_dir or ".", project=self.project, entity=self.entity, name=name,
                           id=run_id, group=self.group, job_type=self.job_type, tags=self.tags, config=config)
            define_metrics(run)
            return WandbLogger(experiment=run, save_dir=self.save_dir or ".", offline=attempt == "offline")

        self.logger = start_with_fallback(start, mode)
        return self.logger

    def log_results(self, rows: list[dict[str, float]], summary: dict[str, Any], checkpoint: Path | None) -> None:
        """The ε curve as a W&B table and line plots, the summary numbers and the checkpoint as an Artifact of type
        `model` (offline runs hold it until `wandb sync`)."""
        if self.logger is None:
            return
        try:
            import wandb

            run = self.logger.experiment
            columns = list(rows[0])
            table = wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in rows])
            run.log({"eval/curve": table,
                     "eval/error_vs_eps": wandb.plot.line(table, "eps", "error", title="error rate vs ε"),
                     "eval/confidence_vs_eps": wandb.plot.line(table, "eps", "confidence", title="confidence vs ε"),
                     **curve_scalars(rows)})
            run.summary.update(summary)
            if checkpoint is not None and self.log_checkpoint:
                artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata=summary)
                artifact.add_file(str(checkpoint))
                run.log_artifact(artifact)
        except Exception as error:  # noqa: BLE001
            say_once(f"W&B logging failed ({error}); results are on disk")

    def log_stage(self, sweep_dir: Path, job_type: str, tables: dict[str, Any], images: list[Path],
                  html: Path | None = None) -> None:
        """One W&B run for a sweep stage (transfer, summary): its tables, its plots (`plots/<name>`) and, as `report`,
        the HTML page `html`, in the sweep's group."""
        mode = resolve_mode(self.mode)
        if mode == "disabled":
            return
        import wandb

        def start(attempt: str):
            return init_run(attempt, sweep_dir, project=self.project, entity=self.entity, group=self.group,
                            job_type=job_type, name=f"{self.group}-{job_type}",
                            # a new id for each run of the stage (W&B refuses some characters in ids)
                            id=re.sub(r"[:;,#?/'\s]+", "_", f"{self.group}-{job_type}-{secrets.token_hex(4)}"))

        run = start_with_fallback(start, mode)
        if run is None:
            return
        try:
            with run:
                run.log({name: wandb.Table(dataframe=frame) for name, frame in tables.items() if len(frame)})
                run.log({f"plots/{p.stem}": wandb.Image(str(p)) for p in images})
                if html is not None:   # as written: the page is self-contained, W&B's injected stylesheet is not
                    run.log({"report": wandb.Html(Path(html).read_text(encoding="utf-8"), inject=False)})
        except Exception as error:  # noqa: BLE001 - results are on disk whatever W&B does
            say_once(f"W&B {job_type} run failed ({error}); results are on disk")
        finally:
            _release_wandb()   # as in finish(): the run's record log is complete when the stage goes on

    def finish(self) -> None:
        if self.logger is None:
            return
        try:
            self.logger.experiment.finish()
        except Exception as error:  # noqa: BLE001
            say_once(f"W&B finish failed ({error})")
        self.logger = None
        _release_wandb()   # stops W&B's service, which writes out the run's record log before the job returns
