"""Results name a model as the user does: a class set with `model._target_=<module.Class>` by its import path (not
the `softmax` option it was composed on), a zoo member by its name, Harness's own options by their option; in
`choices.model` (metrics.json, W&B config and the W&B report's groups), summary.csv's `model` column and the
settings. Job ids do not change: they hash the resolved config without `choices`."""
from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir

from pipeline.config import CONF_DIR, compose_job, hydra_context, model_name
from pipeline.stages.composer import Composer
from pipeline.stages.plan import job_id, plan
from pipeline.stages.report import summary_frame


def planned(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("sweep", overrides=list(overrides))
        return plan(cfg.sweep, group=cfg.sweep.name)


@pytest.mark.parametrize("overrides, name", [
    ((), "softmax"),
    (("model=maxout",), "maxout"),
    (("model._target_=mynet.Net",), "mynet.Net"),
    (("model=maxout", "model._target_=pipeline.models.Maxout"), "maxout"),      # the option's own class
    (("model=pretrained", "model.path=a.pt", "model.name=a"), "a"),
    (("model=pretrained", "model.path=a.pt"), "pretrained")])
def test_a_job_config_names_its_model_as_the_user_does(overrides, name):
    with hydra_context():
        assert compose_job(overrides).choices.model == name
        assert Composer()(list(overrides))["choices"]["model"] == name


def test_a_value_override_on_a_composed_base_renames_the_model():
    """The planner composes each combination of groups once and sets values on it: a class or zoo name set as a
    value must rename the model there too, and the next job of the same base must not keep that name."""
    with hydra_context():
        composer = Composer()
        assert composer(["model=softmax", "seed=0"])["choices"]["model"] == "softmax"
        assert composer(["model=softmax", "model._target_=mynet.TinyNet"])["choices"]["model"] == "mynet.TinyNet"
        assert composer(["model=softmax", "seed=1"])["choices"]["model"] == "softmax"
    assert model_name(None, {"_target_": "mynet.Net", "name": None}) == "mynet.Net"


def test_a_sweep_of_user_classes_names_them_in_plan_summary_and_settings():
    jobs = planned("+sweep.grid.model._target_='mynet.Net,mynet.TinyNet'", "sweep.grid.regularizer=none")
    assert [job.config["choices"]["model"] for job in jobs] == ["mynet.Net", "mynet.TinyNet"]
    assert [job.setting for job in jobs] == ["mynet.Net,none", "mynet.TinyNet,none"]
    metrics = {job.id: {"curve": [{"eps": 0.25, "error": 0.5, "confidence": 0.9}], "clean_error": 0.1,
                        "clean_confidence": 0.9, "train_error": 0.1} for job in jobs}
    assert summary_frame(jobs, metrics)["model"].tolist() == ["mynet.Net", "mynet.TinyNet"]
    # the ids hash the config without choices: what they were when choices said "softmax"
    for job in jobs:
        assert job.id == job_id({**job.config, "choices": {**job.config["choices"], "model": "softmax"}})


def test_a_zoo_names_its_members_and_the_report_lists_their_files_once(tmp_path):
    import hashlib

    import pandas as pd

    from pipeline.paper.results import Results
    from pipeline.report.models import files_section
    from pipeline.report.document import Document

    for name in "ab":
        (tmp_path / f"{name}.pt").write_bytes(name.encode())     # planning reads the files' sha256 only
    jobs = planned("experiment=zoo", f"zoo.models={{a: {tmp_path / 'a.pt'}, b: {tmp_path / 'b.pt'}}}",
                   "+sweep.grid.seed='0,1'")
    assert sorted(job.config["choices"]["model"] for job in jobs) == ["a", "a", "b", "b"]
    doc = Document("report")
    files_section(doc, Results.of({job.id: job.config for job in jobs}, pd.DataFrame()))
    lines = doc.markdown().splitlines()
    for name in "ab":
        row = f"| {name} | {tmp_path / f'{name}.pt'} | {hashlib.sha256(name.encode()).hexdigest()} |"
        assert lines.count(row) == 1, lines


def test_a_trained_job_records_the_class_in_metrics(tmp_path):
    """A real job (one epoch on 200 digits) with Harness's MLP class named over model=softmax: metrics.json's
    choices name the class."""
    from pipeline.training.job import run_job

    with hydra_context():
        cfg = compose_job(["model._target_=pipeline.models.MLP", "logger=none", "trainer.max_epochs=1",
                           "data.limit=200", "trainer.accelerator=cpu"])
    run_job(cfg, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["choices"]["model"] == "pipeline.models.MLP"


def test_pretrained_jobs_are_counted_as_evaluated_not_trained(tmp_path, monkeypatch):
    """The train stage's line: a zoo member is evaluated, a job of Harness's own is trained (the tasks are stood
    in for: what is counted is which jobs they ran)."""
    from pipeline.cluster.tasks import Outcome
    from pipeline.stages import train

    (tmp_path / "a.pt").write_bytes(b"a")
    jobs = planned("experiment=zoo", f"zoo.models={{a: {tmp_path / 'a.pt'}}}") + planned("sweep.grid.model=softmax",
                                                                                         "sweep.grid.regularizer=none")
    monkeypatch.setattr(train, "run_tasks", lambda stage, function, calls, *args, **kwargs:
                        Outcome(results={key: {} for key in calls}))
    outcome = train.run_jobs(jobs, tmp_path / "sweep")
    assert outcome.counts() == "trained 1, evaluated 1 (trained elsewhere), reused 0, failed 0"
    assert train.Trained(trained=["x"]).counts() == "trained 1, reused 0, failed 0"   # as before for other sweeps
