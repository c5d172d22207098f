"""ntlr.integrations: the trained rate and the meta-step counts where users look (issue 14, item 7).

Frameworks log ``param_groups[i]["lr"]``, the scheduled rate; these check that each integration logs
what ``TLR.get_lr()`` and ``TLR.history`` say, and that ``import ntlr`` imports none of the frameworks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ntlr import TLR, Status
from ntlr.integrations.metrics import find_tlr, tlr_metrics
from ntlr.integrations.tensorboard import write_scalars

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def _trained_tlr(steps: int = 12) -> TLR:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    groups = [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.02}]
    opt = TLR(torch.optim.SGD(groups, lr=0.05), update_every=3)
    for t in range(steps):
        opt.zero_grad()
        gen = torch.Generator().manual_seed(t)
        loss = (model(torch.randn(16, 4, generator=gen)) - 1.0).pow(2).mean()
        loss.backward()
        opt.observe_loss(loss)
        opt.step()
    if steps:
        assert opt.get_lr() != [0.05, 0.02]  # trained: the checks below are not about the scheduled rate
    return opt


def _expected(opt: TLR, prefix: str = "tlr/") -> dict[str, float]:
    counts = Counter(record.status for record in opt.history)
    return {
        **{f"{prefix}lr_group{i}": rate for i, rate in enumerate(opt.get_lr())},
        **{f"{prefix}{status.value}": float(counts[status]) for status in Status},
    }


def test_import_ntlr_imports_no_framework():
    code = (
        "import sys, ntlr, ntlr.integrations, ntlr.integrations.metrics, ntlr.integrations.tensorboard\n"
        "loaded = {'lightning', 'transformers', 'tensorboard', 'tensorboardX'} & set(sys.modules)\n"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_metrics_are_the_effective_rates_and_the_status_counts():
    opt = _trained_tlr()
    metrics = tlr_metrics(opt)
    assert metrics == _expected(opt)
    assert metrics["tlr/lr_group0"] != opt.param_groups[0]["lr"]  # not the scheduled rate
    assert sum(metrics[f"tlr/{s.value}"] for s in Status) == len(opt.history) == 8  # 4 windows, 2 groups


class _Wrapper:
    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer


def test_find_tlr_looks_through_wrappers_and_says_none_otherwise():
    opt = _trained_tlr(0)
    assert find_tlr(opt) is opt and find_tlr(_Wrapper(_Wrapper(opt))) is opt
    assert find_tlr(opt.optimizer) is None and find_tlr(None) is None


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match=r"optimizer must be an ntlr\.TLR"):
        tlr_metrics(torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"optimizer must be an ntlr\.TLR or wrap one"):
        write_scalars(_FakeWriter(), object(), 0)
    with pytest.raises(TypeError, match="writer must have an add_scalar method"):
        write_scalars(object(), _trained_tlr(0), 0)  # type: ignore[arg-type]


class _FakeWriter:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int | None]] = []

    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None) -> None:
        self.scalars.append((tag, scalar_value, global_step))


def test_write_scalars_writes_every_metric_at_the_step():
    opt = _trained_tlr()
    writer = _FakeWriter()
    write_scalars(writer, _Wrapper(opt), 12)
    assert {tag: value for tag, value, _ in writer.scalars} == _expected(opt)
    assert {step for _, _, step in writer.scalars} == {12}


def test_write_scalars_to_a_real_summary_writer(tmp_path: Path):
    tensorboard = pytest.importorskip("torch.utils.tensorboard")
    opt = _trained_tlr()
    with tensorboard.SummaryWriter(str(tmp_path)) as writer:
        write_scalars(writer, opt, 12)
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())


# -- Lightning ------------------------------------------------------------------------------------------
@pytest.mark.frameworks
def _fit_lightning(configure: Any, on_step: Any = None, **trainer_kwargs: Any) -> Any:
    """Fit a small regression module whose ``configure_optimizers`` returns ``configure(params)``;
    ``on_step(optimizer)`` after every batch."""
    pl = pytest.importorskip("lightning.pytorch")

    class Regression(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self.net(x), y)

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            if on_step is not None:
                on_step(self.trainer.optimizers[0])

        def configure_optimizers(self) -> Any:
            return configure(self.parameters())

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen)
    loader = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
    options = {"logger": False, **trainer_kwargs}
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **options,
    )
    trainer.fit(Regression(), loader)
    return trainer


def _fit_with_budget(configure: Any, **trainer_kwargs: Any) -> Any:
    from ntlr.integrations.lightning import TLRBudget

    return _fit_lightning(configure, callbacks=[TLRBudget(anneal_fraction=0.25)], **trainer_kwargs)


def test_lightning_monitor_logs_the_trained_rates_through_the_modules_loggers():
    pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.loggers import Logger

    from ntlr.integrations.lightning import TLRMonitor

    class Recorder(Logger):
        def __init__(self) -> None:
            super().__init__()
            self.logged: list[tuple[int | None, dict[str, float]]] = []

        @property
        def name(self) -> str:
            return "recorder"

        @property
        def version(self) -> int:
            return 0

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            self.logged.append((step, dict(metrics)))

    recorder = Recorder()
    rates: list[list[float]] = []
    trainer = _fit_lightning(
        lambda params: TLR(torch.optim.SGD(params, lr=0.1), update_every=2),
        on_step=lambda tlr: rates.append(tlr.get_lr()),
        max_epochs=2,
        logger=recorder,
        log_every_n_steps=1,
        callbacks=[TLRMonitor()],
    )
    tlr = trainer.optimizers[0]
    ours = [(step, metrics) for step, metrics in recorder.logged if "tlr/lr_group0" in metrics]
    assert [step for step, _ in ours] == list(range(1, 17))  # every optimizer step, once
    assert [metrics["tlr/lr_group0"] for _, metrics in ours] == [r[0] for r in rates]
    assert ours[-1][1] == _expected(tlr)
    assert len(set(r[0] for r in rates)) > 1  # the rate was trained: the check above is not vacuous


def test_lightning_budget_hands_tlr_the_trainers_budget():
    trainer = _fit_with_budget(
        lambda params: TLR(torch.optim.SGD(params, lr=0.1), update_every=2), max_epochs=2
    )
    tlr = trainer.optimizers[0]
    assert tlr.total_steps == trainer.estimated_stepping_batches == 16  # 2 epochs of 8 batches
    assert tlr.anneal_steps == 4
    assert tlr.get_lr() == [0.0]  # decayed to 0 at the budget's end
    # Its own budget stays; a scheduler's decay is not compounded (a warning says so).
    own = _fit_with_budget(
        lambda p: TLR(torch.optim.SGD(p, lr=0.1), update_every=2, total_steps=40), max_epochs=1
    )
    assert own.optimizers[0].total_steps == 40

    def scheduled(params: Any) -> Any:
        tlr = TLR(torch.optim.SGD(params, lr=0.1), update_every=2)
        return {"optimizer": tlr, "lr_scheduler": torch.optim.lr_scheduler.StepLR(tlr, step_size=4)}

    with pytest.warns(UserWarning, match="learning rate scheduler"):
        assert _fit_with_budget(scheduled, max_epochs=1).optimizers[0].total_steps is None


def test_lightning_budget_checks_its_fraction_by_name():
    pytest.importorskip("lightning.pytorch")
    from ntlr.integrations.lightning import TLRBudget

    with pytest.raises(ValueError, match="anneal_fraction"):
        TLRBudget(anneal_fraction=1.5)


# -- Transformers -----------------------------------------------------------------------------------------
@pytest.mark.frameworks
def test_transformers_callback_adds_the_trained_rates_to_the_trainers_logs(tmp_path: Path):
    transformers = pytest.importorskip("transformers")
    from ntlr.integrations.transformers import TLRLogCallback

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(config)
    gen = torch.Generator().manual_seed(0)
    ids = (torch.randint(0, 32, (32, 1), generator=gen) + torch.arange(16)) % 32
    data = [{"input_ids": row, "labels": row} for row in ids]
    tlr = TLR(torch.optim.AdamW(model.parameters(), lr=3e-3), update_every=3, rule="paper")
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=8,
        report_to=[],
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    seen: list[dict[str, float]] = []

    class Reporter(transformers.TrainerCallback):  # stands for TensorBoard/W&B: logs what it is given
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            seen.append(dict(logs))

    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=data, optimizers=(tlr, None), callbacks=[Reporter()]
    )
    TLRLogCallback.add_first(trainer)
    trainer.train()
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(history) == 8 and all("tlr/lr_group0" in entry for entry in history)
    assert history[-1]["tlr/lr_group0"] == pytest.approx(tlr.get_lr()[0])
    assert history[-1]["tlr/lr_group0"] != pytest.approx(history[-1]["learning_rate"])  # trained
    assert {k: v for k, v in history[-1].items() if k.startswith("tlr/")} == _expected(tlr)
    assert [entry["tlr/lr_group0"] for entry in seen if "loss" in entry] == [
        entry["tlr/lr_group0"] for entry in history
    ]
