"""A report about the researcher's own models: a sweep of two classes of theirs (and Harness's softmax) on an .npz of
their own opens with the models side by side (mean ± interval over seeds: clean error, the strongest attack's curve
with FGSM's beside it, the ε that fools half the test set, transfer in and out, flags) and holds no claim, badge or
figure of the paper; the same sweep on MNIST's digits adds the paper's section after it. Example mosaics say
"true → predicted" under each image; wide tables scroll inside their box at 1400 px with the first column held.

The sweeps are planned for real (their job configs, as the report reads them); their numbers are small tables. One
slow test runs such a sweep whole (about 20 s)."""
from __future__ import annotations

import itertools

import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pipeline.config import CONF_DIR
from pipeline.paper.claims import CLAIMS
from pipeline.paper.results import Results
from pipeline.paper.verdicts import claims_table
from pipeline.report.plots import Examples, examples_figure
from pipeline.report.models import eps_fooling_half
from pipeline.report.sweep_report import paper_claims, write_report
from pipeline.stages.plan import plan
from tests.support.chromium import Browser
from tests.support.commands import run_command
from tests.support.configs import compose as compose_job

EPSILONS = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
SEEDS = (0, 1)
# Per model class: clean error, then the strongest attack's and FGSM's error at each ε (clipped to [0, 1], the jobs'
# own clipping); seed 1 adds 2 points everywhere.
CURVES = {
    "mynet.Net": (0.10, [0.2, 0.4, 0.6, 0.8, 0.9, 0.95], [0.15, 0.3, 0.45, 0.55, 0.6, 0.7]),
    "mynet.TinyNet": (0.05, [0.1, 0.15, 0.2, 0.25, 0.3, 0.35], [0.08, 0.1, 0.12, 0.14, 0.16, 0.18]),
    "pipeline.models.Softmax": (0.05, [0.6, 0.9, 1.0, 1.0, 1.0, 1.0], [0.5, 0.8, 0.95, 1.0, 1.0, 1.0]),
}
UNCLIPPED = 0.99        # the strongest attack without clipping: not the jobs' own, never shown in the lead table


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    """The researcher's own data: 8×8 images of 3 classes."""
    path = tmp_path_factory.mktemp("data") / "mine.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.random((60, 8, 8), dtype=np.float32), y_train=np.arange(60) % 3,
             x_test=rng.random((30, 8, 8), dtype=np.float32), y_test=np.arange(30) % 3)
    return path


def planned(*data: str) -> dict[str, dict]:
    """job id -> resolved config of a sweep of the three classes, two seeds each (data: job overrides)."""
    overrides = ["+sweep.grid.model._target_='" + ",".join(CURVES) + "'", "sweep.grid.regularizer=none",
                 "+sweep.grid.seed='0,1'"] + ([f"sweep.add=[{','.join(repr(o) for o in data)}]"] if data else [])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("sweep", overrides=overrides)
        return {job.id: {**job.config, "setting": job.setting} for job in plan(cfg.sweep, group=cfg.sweep.name)}


def measured(configs: dict[str, dict]) -> Results:
    """summary.csv, evaluations.csv and transfer_settings.csv rows for the planned jobs, from CURVES."""
    summary, evaluations = [], []
    for job, config in configs.items():
        clean, strongest, fgsm = CURVES[config["model"]["_target_"]]
        shift, setting = 0.02 * config["seed"], config["setting"]
        for eps, error in zip([0.0, *EPSILONS], [clean, *fgsm]):
            summary.append({"job_id": job, "setting": setting, "seed": config["seed"], "eps": eps,
                            "error": min(error + shift, 1.0), "confidence": 0.9, "confidence_wrong": 0.8,
                            "clean_error": clean + shift, "clean_confidence": 0.9, "train_error": 0.0})
        for eps, error in zip(EPSILONS, strongest):
            evaluations += [{"job_id": job, "evaluation": "strongest", "clip": "0-1", "eps": eps,
                             "error": min(error + shift, 1.0), "clean_error": clean + shift},
                            {"job_id": job, "evaluation": "strongest", "clip": "none", "eps": eps,
                             "error": UNCLIPPED, "clean_error": clean + shift}]
    settings = sorted({config["setting"] for config in configs.values()})
    transfer = pd.DataFrame([{"source": s, "target": t, "eps": 0.25, "error": 0.5 if s == t else 0.1 + 0.1 * i,
                              "error_half": float("nan"), "agreement_both_wrong": 0.5, "seeds": len(SEEDS)}
                             for i, s in enumerate(settings) for t in settings])
    return Results.of(configs, pd.DataFrame(summary), evaluations=pd.DataFrame(evaluations),
                      transfer_settings=transfer)


def sections(markdown: str) -> list[str]:
    return [line[3:] for line in markdown.splitlines() if line.startswith("## ")]


def lead_table(markdown: str) -> dict[str, dict[str, str]]:
    """The first section's first table: model -> {column: cell}."""
    section = markdown.split("\n## ")[1].splitlines()
    start = next(i for i, line in enumerate(section) if line.startswith("|"))
    lines = list(itertools.takewhile(lambda line: line.startswith("|"), section[start:]))
    header, *rows = ([cell.strip() for cell in line.strip("|").split("|")] for line in lines)
    return {cells[0]: dict(zip(header, cells)) for cells in rows[1:]}


@pytest.fixture(scope="module")
def own(npz, tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("own")
    write_report(folder, "mine", measured(planned("data=arrays", f"data.path={npz}")), {}, {})
    return folder, (folder / "report.md").read_text()


def test_a_sweep_on_your_own_data_opens_with_your_models_and_holds_no_paper_claim(own):
    _, markdown = own
    assert sections(markdown)[0] == "Models side by side"
    for papers in ("Paper vs this run", "Verdicts", "PASS", "FAIL", "NOT RUN", "The paper's figures", "Fig. "):
        assert papers not in markdown, papers
    # the models by their import paths; Harness's softmax on this data is a model like the others, not the paper's
    assert sorted(lead_table(markdown)) == ["mynet.Net,none", "mynet.TinyNet,none", "pipeline.models.Softmax,none"]


def test_the_lead_table_is_the_robustness_curve_per_model_over_seeds(own):
    table = lead_table(own[1])
    net = table["mynet.Net,none"]
    columns = list(net)
    assert columns[:4] == ["model", "seeds", "clean error", "clean confidence"]
    curve = [f"ε={eps:g} {attack}" for eps in EPSILONS for attack in ("strongest", "FGSM")]
    assert columns[4:4 + len(curve)] == curve                   # FGSM beside the strongest attack at every ε
    assert columns[4 + len(curve):] == ["ε fooling half", "transfer in", "transfer out", "flags ⚑"]
    assert net["seeds"] == "2" and re.fullmatch(r"11\.0 ± \d+\.\d%", net["clean error"])
    assert re.fullmatch(r"61\.0 ± \d+\.\d%", net["ε=0.15 strongest"])       # own clipping: never the unclipped 99%
    assert re.fullmatch(r"46\.0 ± \d+\.\d%", net["ε=0.15 FGSM"])
    assert re.fullmatch(r"0\.12\d? ± 0\.0\d+", net["ε fooling half"])      # between ε = .1 and .15 on both seeds
    assert table["mynet.TinyNet,none"]["ε fooling half"] == "> 0.3"         # never half fooled up to the largest ε
    assert table["pipeline.models.Softmax,none"]["ε fooling half"].startswith("0.04")
    assert net["transfer out"] == "10.0%" and net["transfer in"] == "25.0%"  # the others' examples: 20% and 30%


def test_the_eps_fooling_half_is_read_between_the_evaluated_eps():
    assert eps_fooling_half([0.0, 0.1, 0.15], [0.1, 0.4, 0.6]) == pytest.approx(0.125)
    assert eps_fooling_half([0.0, 0.1], [0.5, 0.9]) == 0.0                  # half wrong without any attack
    assert eps_fooling_half([0.0, 0.1, 0.3], [0.1, 0.2, 0.45]) == float("inf")


def test_on_mnist_digits_the_papers_claims_follow_the_models(tmp_path):
    write_report(tmp_path, "paper", measured(planned()), {}, {})            # the default data: the embedded MNIST
    markdown = (tmp_path / "report.md").read_text()
    assert sections(markdown)[:2] == ["Models side by side", "Paper vs this run"]
    assert markdown.index("**Verdicts:**") < markdown.index("**Contents**")  # the counts still open the report
    assert "| FGSM (ε=.25) fools the shallow softmax almost always" in markdown


def test_the_conv_net_claim_is_judged_on_cifar10_only():
    conv = OmegaConf.to_container(compose_job("model=conv"), resolve=True)          # on the embedded MNIST digits
    summary = pd.DataFrame([{"job_id": "conv", "setting": "conv,none", "seed": 0, "eps": 0.1, "error": 0.9,
                             "confidence": 0.9, "confidence_wrong": 0.9, "clean_error": 0.01}])
    claims = paper_claims(Results.of({"conv": conv}, summary)).set_index("claim")["verdict"]
    cifar = next(claim.text for claim in CLAIMS if claim.data == "cifar10")
    assert claims[cifar].startswith("NOT RUN (the sweep has no conv net job")
    assert claims_table(Results.of({"conv": conv}, summary), [c for c in CLAIMS if c.text == cifar])[
        "verdict"].iloc[0].startswith("PASS")                                     # judged on any data, it would pass


def test_mosaics_say_true_and_predicted_under_each_image_and_frame_the_wrong_ones():
    images = [torch.rand(3, 1, 8, 8)] * 2
    figure = examples_figure(Examples(["ε=0", "ε=0.1"], images, [0, 1, 2], [[0, 1, 2], [0, 2, 1]]))
    clean, attacked = figure.axes
    assert [text.get_text() for text in attacked.texts] == ["0 → 0", "1 → 2", "2 → 1"]
    assert [text.get_color() for text in attacked.texts] == ["black", "#cf222e", "#cf222e"]
    assert len(attacked.patches) == 2 and len(clean.patches) == 0
    assert attacked.get_title(loc="left") == "ε=0.1: 2 of 3 wrong"


# What a reader sees of the lead table at a width: whether the page scrolls sideways, whether the table's box does,
# on how many lines the first model's name is written, and where the first and second columns are before and after
# scrolling that box to its end.
MEASURE = """(() => {
  const box = document.querySelector('.table'), row = box.querySelector('tbody tr');
  const at = () => [row.cells[0].getBoundingClientRect().left, row.cells[1].getBoundingClientRect().left];
  const name = document.createRange(); name.selectNodeContents(row.cells[0]);
  const lines = name.getClientRects().length, before = at(); box.scrollLeft = box.scrollWidth;
  return {lines: lines, page: document.documentElement.scrollWidth, width: innerWidth, box: box.clientWidth,
          table: box.scrollWidth, before: before, after: at(), right: box.getBoundingClientRect().right,
          last: row.cells[row.cells.length - 1].getBoundingClientRect().right};
})()"""


def shown_at(browser: Browser, page: Path, width: int) -> dict:
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    browser.call("Page.enable", session=session)
    browser.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": 1000, "deviceScaleFactor": 1,
                                                        "mobile": False}, session)
    browser.call("Page.navigate", {"url": page.resolve().as_uri()}, session)
    browser.wait_for("Page.loadEventFired", session)
    return browser.call("Runtime.evaluate", {"expression": MEASURE, "returnByValue": True}, session)["result"]["value"]


@pytest.mark.browser
@pytest.mark.slow
def test_a_wide_table_scrolls_in_its_box_with_the_model_column_held_at_1400_px(own, chromium_path):
    folder, _ = own
    with Browser() as browser:
        shown = shown_at(browser, folder / "report.html", 1400)
    assert shown["page"] <= shown["width"], shown                        # the page itself never scrolls sideways
    assert shown["table"] > shown["box"], shown                          # 17 columns: the table's box scrolls
    assert shown["lines"] == 1, shown                                     # the name is not squeezed to fit
    assert shown["after"][0] == pytest.approx(shown["before"][0]), shown  # the model column stays in place
    assert shown["after"][1] < shown["before"][1] - 100, shown            # while the numbers move under it
    assert shown["last"] <= shown["right"] + 1, shown                     # and the last column comes into view


# The researcher's package for the whole sweep below: plain torch, for 8×8 images of 3 classes.
OWN_CLASSES = """
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.body(x)


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))

    def forward(self, x):
        return self.body(x)
"""


@pytest.mark.slow
def test_a_whole_sweep_of_your_classes_on_your_npz_reports_them_first(npz, tmp_path):
    """Plan, train (1 epoch), transfer, evaluate and report for real (about a minute on 2 cores)."""
    (tmp_path / "ownnets").mkdir()
    (tmp_path / "ownnets" / "__init__.py").write_text(textwrap.dedent(OWN_CLASSES))
    sweep_dir = tmp_path / "sweep"
    done = run_command(["jobs.sweep", "+sweep.grid.model._target_='ownnets.Net,ownnets.TinyNet'",
                        "sweep.grid.regularizer=none", "data=arrays", f"data.path={npz}", f"dir={sweep_dir}",
                        "sweep.add=['trainer.max_epochs=1']", "cluster.num_cpus=1", "report.images=3",
                        "evaluation.attacks.apgd.steps=5", "evaluation.attacks.autoattack.components=[apgd-ce]"],
                       timeout=600, PYTHONPATH=f"{Path(__file__).resolve().parent.parent}:{tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    markdown = (sweep_dir / "report.md").read_text()
    assert sections(markdown)[0] == "Models side by side"
    assert sorted(lead_table(markdown)) == ["ownnets.Net,none", "ownnets.TinyNet,none"]
    assert "ε=0.25 strongest" in lead_table(markdown)["ownnets.Net,none"]
    for papers in ("Paper vs this run", "Verdicts", "NOT RUN", "The paper's figures"):
        assert papers not in markdown, papers
    assert len(list((sweep_dir / "plots").glob("examples_*.png"))) == 2
