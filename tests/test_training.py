"""Baseline training: exact resume after a real kill, and evaluation of the checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aecnn.cli.main import main
from aecnn.evaluation import evaluate_checkpoint
from aecnn.training.checkpoint import load_checkpoint


def _args(root: Path, tmp: Path, out: Path) -> list[str]:
    return ["train-baseline", "--data", str(root), "--model", "resnet18", "--epochs", "3",
            "--input-size", "32", "--subset", "2", "--out", str(out), "--no-progress",
            "--set", f"data.manifest={tmp / 'manifest.json'}", "--set", "data.workers=0",
            "--set", "data.batch_size=32", "--set", "threads=1", "--set", "optim.lr=0.05"]


def _comparable(record: dict) -> dict:
    keep = ("test_top1", "test_top5", "test_loss", "val_top1", "best_epoch", "n_test")
    hist = [{k: v for k, v in row.items() if k != "seconds"} for row in record["history"]]
    return {**{k: record[k] for k in keep}, "history": hist}


def test_killed_and_resumed_run_matches_uninterrupted(caltech_root, tmp_path):
    straight = tmp_path / "straight"
    assert main(_args(caltech_root, tmp_path, straight)) == 0
    expected = json.loads((straight / "result.json").read_text())

    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "aecnn", *_args(caltech_root, tmp_path,
                                                                   killed)], env=env)
    deadline = time.monotonic() + 300
    try:
        while not (killed / "last.pt").exists():
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done = load_checkpoint(killed / "last.pt", ("epoch",))["epoch"]
    assert 1 <= done < 3, f"kill came too late (epoch {done})"
    assert not (killed / "result.json").exists()

    assert main(_args(caltech_root, tmp_path, killed)) == 2  # refuses to overwrite
    assert main([*_args(caltech_root, tmp_path, killed), "--resume"]) == 0
    resumed = json.loads((killed / "result.json").read_text())
    assert _comparable(resumed) == _comparable(expected)

    res = evaluate_checkpoint(str(straight / "best.pt"), "test", progress=False)
    assert res["top1"] == pytest.approx(expected["test_top1"])
    assert res["n"] == expected["n_test"] == 101
    ckpt = load_checkpoint(straight / "best.pt")
    assert len(ckpt["classes"]) == 101 and ckpt["config"]["model"]["name"] == "resnet18"
    assert isinstance(ckpt["model"]["conv1.weight"], torch.Tensor)


def test_resume_refuses_changed_config(caltech_root, tmp_path):
    out = tmp_path / "run"
    args = _args(caltech_root, tmp_path, out)
    args[args.index("--epochs") + 1] = "1"
    assert main(args) == 0
    changed = [*args, "--resume", "--set", "optim.lr=0.2"]
    assert main(changed) == 2


def test_a_bad_device_name_is_a_config_error():
    from aecnn.errors import ConfigError
    from aecnn.training.loop import resolve_device

    with pytest.raises(ConfigError, match="not a torch device"):
        resolve_device("gpu0")
    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type in ("cpu", "cuda")


def test_distillation_loss_and_its_checks():
    from aecnn.errors import ConfigError
    from aecnn.training.aecnn import StageBudget
    from aecnn.training.loop import Distillation

    teacher = torch.nn.Linear(4, 3)
    kd = Distillation(teacher, weight=0.5, temperature=2.0)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    hard = torch.tensor(1.25)
    # a student that agrees with its teacher pays only the label half
    assert kd.loss(logits, logits, hard).item() == pytest.approx(0.625)
    other = torch.tensor([[0.0, 0.0, 2.0], [1.0, 1.0, 1.0]])
    p_t = torch.softmax(logits / 2, dim=1)
    kl = (p_t * (p_t.log() - torch.log_softmax(other / 2, dim=1))).sum(1).mean()
    assert kd.loss(other, logits, hard).item() == pytest.approx(0.625 + 0.5 * 4 * kl.item())
    for bad in ({"weight": 0.0}, {"weight": 1.5}, {"weight": 0.5, "temperature": 0.0}):
        with pytest.raises(ConfigError, match="distill"):
            Distillation(teacher, **bad)
    with pytest.raises(ConfigError, match="distill"):
        StageBudget(distill=-0.1)
    with pytest.raises(ConfigError, match="distill_temperature"):
        StageBudget(distill=0.5, distill_temperature=-1.0)


def test_fit_distils_from_a_fixed_teacher(tmp_path):
    from torch.utils.data import TensorDataset

    from aecnn.training.config import OptimConfig
    from aecnn.training.loop import Distillation, RunOptions, fit

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(48, 3, 8, 8, generator=g), torch.randint(0, 4, (48,),
                                                                                generator=g))

    def net() -> torch.nn.Module:
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(),
                                   torch.nn.LazyLinear(4))

    def train(out: str, distill: Distillation | None) -> list[dict]:
        model = net()
        model(data[:1][0])
        return fit(model, data, data, OptimConfig(lr=0.05, epochs=2), tmp_path / out,
                   RunOptions(torch.device("cpu"), progress=False), seed=0, batch_size=16,
                   eval_batch_size=48, workers=0, config={}, meta={}, distill=distill)

    teacher = net()
    teacher(data[:1][0])
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    plain, again = train("plain", None), train("again", None)
    kd = train("kd", Distillation(teacher, weight=1.0))
    assert [r["train_loss"] for r in plain] == [r["train_loss"] for r in again]
    assert [r["train_loss"] for r in kd] != [r["train_loss"] for r in plain]
    # the teacher is the student's start: with weight 1 its first batches cost nothing
    assert kd[0]["train_loss"] < plain[0]["train_loss"]
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())


def test_budget_differs_reads_missing_settings_as_defaults():
    from aecnn.training.aecnn import StageBudget, budget_differs
    from aecnn.training.bottlenet import ModuleBudget

    old = {"epochs": 2, "lr": 0.01, "name": "sgd", "weight_decay": 1e-4, "warmup_epochs": 0,
           "label_smoothing": 0.1, "trains": ["head", "bridge", "tail"]}  # before distill
    assert budget_differs(old, StageBudget()) == []
    assert budget_differs(None, StageBudget(epochs=9)) == []
    assert budget_differs(old, StageBudget(distill=0.7)) == ["budget.distill=0.0 (asked 0.7)"]
    assert budget_differs(old, StageBudget(epochs=3, trains=("tail",))) == [
        "budget.epochs=2 (asked 3)", "budget.trains=['head', 'bridge', 'tail'] (asked ['tail'])"]
    assert budget_differs({"lr": 1e-4}, ModuleBudget()) == []  # its own defaults


def test_rate_term_only_for_quantisation_aware_stages():
    from torch import nn

    from aecnn.compression.qat import FakeQuant, soft_rate
    from aecnn.config import load_config
    from aecnn.core.split import SplitNetwork
    from aecnn.errors import ConfigError
    from aecnn.training.aecnn import AecnnConfig, Pipeline, StageBudget
    from aecnn.training.bottlenet import BottleNetConfig

    with pytest.raises(ConfigError, match="rate"):
        StageBudget(rate=-0.1)
    for cls, kind in ((AecnnConfig, "prune"), (AecnnConfig, "fr"), (BottleNetConfig, "joint")):
        with pytest.raises(ConfigError, match=f"{kind}.rate: only the qat budget"):
            load_config(cls, None, [f"{kind}.rate=0.1"])
    assert load_config(AecnnConfig, None, ["qat.rate=0.25"]).qat.rate == 0.25
    net = SplitNetwork(nn.Conv2d(3, 4, 1), nn.Identity(), nn.Conv2d(4, 2, 1))
    with Pipeline.rate_penalty(net, StageBudget()) as penalty:
        assert penalty is None
    with (pytest.raises(ConfigError, match="does not fine-tune through a quantiser"),
          Pipeline.rate_penalty(net, StageBudget(rate=0.1))):
        pass
    net.quant = FakeQuant(2, 0.9)
    x = torch.rand(2, 3, 5, 5)
    with Pipeline.rate_penalty(net, StageBudget(rate=0.5)) as penalty:
        net(x)
        assert penalty().item() == pytest.approx(0.5 * soft_rate(net.head(x), 2, 0.9).item())
    assert not net.head._forward_hooks  # the hook is gone with the stage


def test_fit_adds_the_penalty_to_the_loss(tmp_path):
    from torch.utils.data import TensorDataset

    from aecnn.training.config import OptimConfig
    from aecnn.training.loop import RunOptions, fit

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 3), torch.randint(0, 2, (32,), generator=g))

    def train(out: str, weight: float) -> list[dict]:
        torch.manual_seed(1)
        model = torch.nn.Linear(3, 2)
        penalty = None if weight == 0 else (lambda: weight * model.weight.square().sum())
        return fit(model, data, data, OptimConfig(lr=0.1, epochs=2), tmp_path / out,
                   RunOptions(torch.device("cpu"), progress=False, channels_last=False),
                   seed=0, batch_size=16, eval_batch_size=32, workers=0, config={}, meta={},
                   penalty=penalty)

    plain, penalised = train("plain", 0.0), train("penalised", 10.0)
    assert penalised[0]["train_loss"] > plain[0]["train_loss"]
    assert [r["val_loss"] for r in penalised] != [r["val_loss"] for r in plain]


def test_epoch_seed_gives_each_stage_its_own_batches():
    from aecnn.training.loop import epoch_seed

    assert [epoch_seed(2, e) for e in range(3)] == [200_006, 200_007, 200_008]  # baseline
    stems = {epoch_seed(2, 0, s) for s in ("", "stem/ca", "stem/pruned-x8", "stem/aecnn-x8",
                                           "layer1.0/aecnn-x8", "stem/aecnn-q2l3p90-x8")}
    assert len(stems) == 6
    seeds = [epoch_seed(s, e, "stem/pruned-x8") for s in range(4) for e in range(5)]
    assert len(set(seeds)) == 20 and all(0 <= s < 2**63 for s in seeds)
    assert epoch_seed(2, 1, "stem/ca") == epoch_seed(2, 1, "stem/ca")  # no hash salt


def test_stages_do_not_replay_the_baselines_batches(tmp_path):
    """A stage's epoch k must not see the batches (order and random augmentation) of the
    baseline's epoch k: before streams, every stage replayed them and learnt them by heart."""
    from torch.utils.data import Dataset

    from aecnn.training.config import OptimConfig
    from aecnn.training.loop import RunOptions, fit

    seen: list[tuple[int, float]] = []

    class Noisy(Dataset):  # records each index with its random "augmentation"
        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int):
            jitter = float(torch.rand(()))
            seen.append((i, jitter))
            return torch.full((3,), jitter), i % 2

    def batches(out: str, stream: str) -> list[tuple[int, float]]:
        seen.clear()
        torch.manual_seed(1)
        fit(torch.nn.Linear(3, 2), Noisy(), [(torch.zeros(3), 0)], OptimConfig(lr=0.1, epochs=1),
            tmp_path / out, RunOptions(torch.device("cpu"), progress=False, channels_last=False),
            seed=2, batch_size=4, eval_batch_size=4, workers=0, config={}, meta={},
            stream=stream)
        return list(seen[:8])

    base, base_again = batches("a", ""), batches("b", "")
    stage, stage_again = batches("c", "stem/aecnn-x8"), batches("d", "stem/aecnn-x8")
    assert base == base_again and stage == stage_again  # deterministic
    assert [i for i, _ in stage] != [i for i, _ in base]  # another order
    assert not {j for _, j in stage} & {j for _, j in base}  # other augmentations


def test_steps_per_epoch_caps_the_optimiser_steps(tmp_path):
    """``steps_per_epoch`` stops each epoch after that many batches (the schedule spans
    only those); a budget's ``steps`` passes it on, and a cap below 1 is a config error."""
    from torch.utils.data import TensorDataset

    from aecnn.errors import ConfigError
    from aecnn.training.aecnn import StageBudget
    from aecnn.training.config import OptimConfig
    from aecnn.training.loop import RunOptions, fit

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 3), torch.randint(0, 2, (64,), generator=g))
    seen: list[int] = []

    def train(out: str, cap: int | None) -> list[dict]:
        torch.manual_seed(1)
        model = torch.nn.Linear(3, 2)
        seen.clear()
        return fit(model, data, data, OptimConfig(lr=0.1, epochs=2, steps_per_epoch=cap),
                   tmp_path / out, RunOptions(torch.device("cpu"), progress=False,
                                              channels_last=False),
                   seed=0, batch_size=8, eval_batch_size=64, workers=0, config={}, meta={},
                   on_step=lambda m: seen.append(1))

    train("all", None)
    assert len(seen) == 2 * 8
    capped = train("capped", 3)
    assert len(seen) == 2 * 3
    assert capped[-1]["lr"] == pytest.approx(0.0)  # the cosine ends with the capped epoch
    assert StageBudget(steps=3).optim().steps_per_epoch == 3
    assert StageBudget().optim().steps_per_epoch is None
    with pytest.raises(ConfigError, match="steps"):
        StageBudget(steps=0)
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        train("bad", 0)


def test_each_split_point_takes_the_ratios_that_divide_its_channels():
    from aecnn.errors import ConfigError
    from aecnn.models import get_spec
    from aecnn.training.aecnn import AecnnConfig, Pipeline

    spec = get_spec("efficientnet_lite0")
    pipe = Pipeline.__new__(Pipeline)  # no baseline needed for the ratio rule
    pipe.spec = spec
    pipe.cfg = AecnnConfig(points=("stem", "blocks.3"), ratios=(2, 4, 8, 16, 20, 32, 40, 64))
    assert pipe.ratios_at(spec.split_point("stem")) == [2, 4, 8, 16, 32]
    assert pipe.ratios_at(spec.split_point("blocks.3")) == [2, 4, 8, 20, 40]
    pipe.check_ratios()
    pipe.cfg = AecnnConfig(points=("stem",), ratios=(3, 64))
    with pytest.raises(ConfigError, match="no ratio in \\[3, 64\\] divides the 32 channels"):
        pipe.check_ratios()
    pipe.cfg = AecnnConfig(points=("stem",), ratios=(0, 2))
    with pytest.raises(ConfigError, match="below 1"):
        pipe.check_ratios()
