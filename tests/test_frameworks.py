"""TLR inside training frameworks: PyTorch Lightning, Hugging Face Transformers ``Trainer``, Accelerate.

Where a framework only drives the loop (Lightning, Accelerate), its run is compared with the same loop
written by hand: the learning-rate trajectory must be the same, so the framework neither skipped, doubled
nor reordered TLR's steps. Each framework is optional: its tests skip when it is not installed. The tests
run under both rules; the robust one reads the loss, which the hand loop feeds as the framework does
(Lightning's closure returns the last micro-batch's loss over the accumulation count).
"""

from __future__ import annotations

import copy
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ntlr import RULES, TLR, RobustRule

pytestmark = pytest.mark.frameworks

# No hub access in tests: the tiny Transformers model is built from a local config.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

SAMPLES, BATCH, UPDATE_EVERY = 64, 8, 2
over_rules = pytest.mark.parametrize("rule", sorted(RULES))


def make_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))


def make_loader() -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(SAMPLES, 4, generator=gen)
    return DataLoader(TensorDataset(x, torch.sin(2 * x.sum(1, keepdim=True))), batch_size=BATCH)


def make_tlr(params: Any, rule: str) -> TLR:
    # Plain SGD: no momentum, so the robust rule's windows are UPDATE_EVERY steps too.
    return TLR(torch.optim.SGD(params, lr=0.1), update_every=UPDATE_EVERY, rule=rule)


def epoch_decay(epoch: int) -> float:
    return 0.5**epoch


def hand_loop(
    epochs: int,
    rule: str,
    accumulate: int = 1,
    autocast: torch.dtype | None = None,
    loss_scale: float = 1.0,
) -> TLR:
    """The plain-torch loop the frameworks should reproduce: mean of ``accumulate`` batch losses per step,
    the scheduler stepped once per epoch; a rule that reads the loss is fed the step's last batch loss
    times ``loss_scale``."""
    net = make_net()
    opt = make_tlr(net.parameters(), rule)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, epoch_decay)
    for _ in range(epochs):
        for i, (x, y) in enumerate(make_loader()):
            with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                loss = nn.functional.mse_loss(net(x), y)
            (loss / accumulate).backward()
            if (i + 1) % accumulate == 0:
                if opt.observes_loss:
                    opt.observe_loss(loss.detach() * loss_scale)
                opt.step()
                opt.zero_grad()
        scheduler.step()
    return opt


def lr_trajectory(opt: TLR) -> list[tuple[int, str, float]]:
    return [(r.step, r.status, r.lr) for r in opt.history]


def assert_same_lrs(
    got: list[tuple[int, str, float]],
    want: list[tuple[int, str, float]],
    trained: list[tuple[int, str, float]] | None = None,
) -> None:
    """``got`` is ``want``; ``trained`` (``want`` by default), the trajectory in which the rule must have
    moved the rate: one in which it never did would prove little."""
    assert [g[:2] for g in got] == [w[:2] for w in want]
    assert [g[2] for g in got] == pytest.approx([w[2] for w in want], rel=1e-6)
    assert any(status == "updated" for _, status, _ in (want if trained is None else trained))


# -- PyTorch Lightning ---------------------------------------------------------------------------------
def _lightning_module(manual: bool, rule: str, scheduled: bool = True) -> Any:
    pl = pytest.importorskip("lightning.pytorch")

    class Regression(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_net()
            self.automatic_optimization = not manual

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            if self.automatic_optimization:
                return loss
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            if _tlr_of(opt).observes_loss:
                _tlr_of(opt).observe_loss(loss.detach())  # manual optimization passes no loss to step()
            opt.step()
            if self.trainer.is_last_batch and scheduled:
                self.lr_schedulers().step()
            return None

        def configure_optimizers(self) -> Any:
            opt = make_tlr(self.parameters(), rule)
            if not scheduled:
                return opt
            scheduler = torch.optim.lr_scheduler.LambdaLR(opt, epoch_decay)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    return Regression()


def _trainer(max_epochs: int, **kwargs: Any) -> Any:
    pl = pytest.importorskip("lightning.pytorch")
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def _tlr_of(optimizer: Any) -> TLR:
    """The TLR behind Lightning's ``LightningOptimizer`` (a dynamic subclass that copies its __dict__)."""
    optimizer = getattr(optimizer, "_optimizer", optimizer)
    assert type(optimizer) is TLR
    return optimizer


@over_rules
@pytest.mark.parametrize("accumulate", [1, 2])
def test_lightning_automatic_optimization(accumulate, rule):
    module = _lightning_module(manual=False, rule=rule)
    trainer = _trainer(3, accumulate_grad_batches=accumulate)
    trainer.fit(module, make_loader())
    opt = trainer.optimizers[0]
    assert isinstance(opt, TLR)
    # Lightning steps with a closure that returns the last batch's loss over the accumulation count.
    want = hand_loop(3, rule, accumulate, loss_scale=1 / accumulate)
    assert_same_lrs(lr_trajectory(opt), lr_trajectory(want))
    assert opt.group_meta[0].steps == 3 * SAMPLES // BATCH // accumulate
    # The scheduler drives the group's lr; TLR's factor multiplies it.
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.get_last_lr() == [pytest.approx(0.1 * epoch_decay(3))]
    assert opt.get_lr() == [pytest.approx(scheduler.get_last_lr()[0] * opt.group_meta[0].factor)]


@over_rules
def test_lightning_manual_optimization(rule):
    module = _lightning_module(manual=True, rule=rule)
    trainer = _trainer(3)
    trainer.fit(module, make_loader())
    wrapped = module.optimizers()
    opt = _tlr_of(wrapped)
    assert_same_lrs(lr_trajectory(opt), lr_trajectory(hand_loop(3, rule)))
    # TLR's API works through Lightning's wrapper too.
    assert wrapped.get_lr() == opt.get_lr()
    assert wrapped.param_groups is opt.param_groups


@over_rules
def test_lightning_checkpoint_resume(tmp_path: Path, rule: str):
    pl = pytest.importorskip("lightning.pytorch")
    uninterrupted = _trainer(3)
    uninterrupted.fit(_lightning_module(manual=False, rule=rule), make_loader())
    full = lr_trajectory(uninterrupted.optimizers[0])

    first = _trainer(2)
    first.fit(_lightning_module(manual=False, rule=rule), make_loader())
    saved_lr = first.optimizers[0].get_lr()
    saved_meta_steps = len(first.optimizers[0].history)
    checkpoint = tmp_path / "two_epochs.ckpt"
    first.save_checkpoint(checkpoint)

    restored: dict[str, Any] = {}

    class RecordRestored(pl.Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            opt = trainer.optimizers[0]
            restored["lr"] = opt.get_lr()
            restored["meta"] = copy.deepcopy(opt.group_meta[0])

    resumed = _trainer(3, callbacks=[RecordRestored()])
    resumed.fit(_lightning_module(manual=False, rule=rule), make_loader(), ckpt_path=str(checkpoint))
    assert restored["lr"] == saved_lr
    assert restored["meta"].steps == 2 * SAMPLES // BATCH
    assert restored["meta"].meta_steps == saved_meta_steps
    # Below the epoch decay's peak a settled rule holds its factor (the schedule anneals): the trained
    # factor the resumed rates carry is the one the first two epochs trained.
    assert restored["meta"].factor != 1.0
    assert_same_lrs(lr_trajectory(resumed.optimizers[0]), full[saved_meta_steps:], trained=full)


def test_lightning_budget_survives_a_resume(tmp_path: Path):
    """TLRBudget on a resumed fit hands over the same whole-run budget, counted from TLR's first step, so
    the resumed run continues the uninterrupted one, decay included."""
    pl = pytest.importorskip("lightning.pytorch")
    from ntlr.integrations.lightning import TLRBudget

    checkpoint = tmp_path / "two_epochs.ckpt"

    class SaveAfterTwoEpochs(pl.Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.current_epoch == 1:
                trainer.save_checkpoint(checkpoint)

    uninterrupted = _trainer(3, callbacks=[TLRBudget(), SaveAfterTwoEpochs()])
    uninterrupted.fit(_lightning_module(manual=False, rule="robust", scheduled=False), make_loader())
    tlr = uninterrupted.optimizers[0]
    assert tlr.total_steps == 3 * SAMPLES // BATCH and tlr.get_lr() == [0.0]
    full = lr_trajectory(tlr)

    resumed = _trainer(3, callbacks=[TLRBudget()])
    module = _lightning_module(manual=False, rule="robust", scheduled=False)
    resumed.fit(module, make_loader(), ckpt_path=str(checkpoint))
    again = resumed.optimizers[0]
    assert again.total_steps == tlr.total_steps
    done = len(full) - len(lr_trajectory(again))  # the history restarts empty after a resume
    assert done > 0
    assert_same_lrs(lr_trajectory(again), full[done:])
    assert again.get_lr() == [0.0]


# -- Accelerate ----------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Accelerate keeps process-wide singletons (mixed precision among them); the Transformers Trainer
    builds on them too. Each test starts and ends with none."""
    yield
    state = sys.modules.get("accelerate.state")
    if state is not None:
        state.AcceleratorState._reset_state(reset_partial_state=True)
        state.GradientState._reset_state()


def _accelerate_run(epochs: int, accumulate: int, mixed_precision: str, rule: str) -> TLR:
    accelerate = pytest.importorskip("accelerate")
    accelerator = accelerate.Accelerator(
        gradient_accumulation_steps=accumulate, mixed_precision=mixed_precision, cpu=True
    )
    net = make_net()
    tlr = make_tlr(net.parameters(), rule)
    scheduler = torch.optim.lr_scheduler.LambdaLR(tlr, epoch_decay)
    net, opt, loader = accelerator.prepare(net, tlr, make_loader())
    assert opt.optimizer is tlr  # Accelerate wraps only torch.optim.Optimizer instances
    for _ in range(epochs):
        for x, y in loader:
            with accelerator.accumulate(net):
                loss = nn.functional.mse_loss(net(x), y)
                accelerator.backward(loss)
                if tlr.observes_loss and accelerator.sync_gradients:
                    tlr.observe_loss(loss.detach())  # once per optimizer step: the step's last batch
                opt.step()
                opt.zero_grad()
        scheduler.step()
    return tlr


@over_rules
def test_accelerate_gradient_accumulation(rule):
    tlr = _accelerate_run(3, accumulate=2, mixed_precision="no", rule=rule)
    assert tlr.group_meta[0].steps == 3 * SAMPLES // BATCH // 2
    assert_same_lrs(lr_trajectory(tlr), lr_trajectory(hand_loop(3, rule, accumulate=2)))


@over_rules
def test_accelerate_bf16_mixed_precision(rule):
    tlr = _accelerate_run(3, accumulate=2, mixed_precision="bf16", rule=rule)
    # bf16 autocast on CPU: the same computation as the hand loop under the same autocast.
    want = hand_loop(3, rule, accumulate=2, autocast=torch.bfloat16)
    assert_same_lrs(lr_trajectory(tlr), lr_trajectory(want))


# -- Hugging Face Transformers Trainer -----------------------------------------------------------------
def _tiny_gpt2() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    return transformers.GPT2LMHeadModel(config)


def _token_dataset(n: int = 48) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    # A learnable pattern: each sequence counts up from a random start, modulo the vocabulary.
    starts = torch.randint(0, 32, (n, 1), generator=gen)
    ids = (starts + torch.arange(16)) % 32
    return [{"input_ids": row, "labels": row} for row in ids]


HF_UPDATE_EVERY = 3


def _hf_window(rule: str) -> int:
    """The window in steps: the robust rule's lasts AdamW's momentum horizon (β1 = 0.9: 10 steps)."""
    if rule == "paper":
        return HF_UPDATE_EVERY
    return RobustRule().window_length(HF_UPDATE_EVERY, {"betas": (0.9, 0.999)})


def _hf_trainer(
    output_dir: Path, max_steps: int, rule: str, *, feed_loss: bool = False, **kwargs: Any
) -> tuple[Any, TLR]:
    transformers = pytest.importorskip("transformers")
    model = _tiny_gpt2()
    tlr = TLR(torch.optim.AdamW(model.parameters(), lr=3e-3), update_every=HF_UPDATE_EVERY, rule=rule)
    # The Trainer calls step() without a closure: the robust rule reads the weights alone here.
    # Linear warm-up from lr 0: the first step has lr 0 and must not count towards TLR's windows.
    scheduler = transformers.get_linear_schedule_with_warmup(
        tlr, num_warmup_steps=2, num_training_steps=max_steps
    )
    args = transformers.TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=max_steps,
        report_to=[],
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        **kwargs,
    )
    trainer_class = transformers.Trainer
    if feed_loss:
        # docs/integrations.md's recipe: hand the rule each micro-batch's loss.
        class LossFeedingTrainer(transformers.Trainer):
            def training_step(self, model, inputs, num_items_in_batch=None):
                loss = super().training_step(model, inputs, num_items_in_batch)
                tlr.observe_loss(loss)
                return loss

        trainer_class = LossFeedingTrainer
    trainer = trainer_class(
        model=model, args=args, train_dataset=_token_dataset(), optimizers=(tlr, scheduler)
    )
    return trainer, tlr


@over_rules
def test_transformers_trainer(tmp_path: Path, rule: str):
    window = _hf_window(rule)
    steps = 1 + 3 * window + 2  # the first at lr 0, then three windows and two steps
    trainer, tlr = _hf_trainer(tmp_path, max_steps=steps, rule=rule, save_strategy="no")
    trainer.train()
    assert _unwrap(trainer.optimizer) is tlr
    meta = tlr.group_meta[0]
    assert meta.steps == steps - 1
    assert len(tlr.history) == 3
    assert tlr.get_lr()[0] == pytest.approx(trainer.lr_scheduler.get_last_lr()[0] * meta.factor)
    assert any(r.status == "updated" for r in tlr.history)


def test_transformers_trainer_can_feed_the_robust_rule_the_loss(tmp_path: Path):
    window = _hf_window("robust")
    steps = 1 + 3 * window + 2
    fed, tlr = _hf_trainer(
        tmp_path / "fed", max_steps=steps, rule="robust", feed_loss=True, save_strategy="no"
    )
    fed.train()
    prev_loss = tlr.group_meta[0].prev_loss
    assert prev_loss is not None  # the windows' losses reached the rule
    assert math.isfinite(prev_loss.mean) and len(tlr.history) == 3
    blind, tlr_blind = _hf_trainer(tmp_path / "blind", max_steps=steps, rule="robust", save_strategy="no")
    blind.train()
    assert tlr_blind.group_meta[0].prev_loss is None


@over_rules
def test_transformers_trainer_resume(tmp_path: Path, rule: str):
    window = _hf_window(rule)
    steps, save_at = 1 + 3 * window + 2, 1 + window + 2  # saved mid-window, one window done
    trainer, tlr = _hf_trainer(tmp_path / "full", max_steps=steps, rule=rule, save_strategy="no")
    trainer.train()
    full = lr_trajectory(tlr)

    trainer, tlr = _hf_trainer(
        tmp_path / "part", max_steps=steps, rule=rule, save_strategy="steps", save_steps=save_at
    )
    trainer.train()
    checkpoint = tmp_path / "part" / f"checkpoint-{save_at}"
    assert (checkpoint / "optimizer.pt").exists()
    resumed, resumed_tlr = _hf_trainer(tmp_path / "resumed", max_steps=steps, rule=rule, save_strategy="no")
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed_tlr.group_meta[0].steps == steps - 1
    meta_steps_before = 1
    assert_same_lrs(lr_trajectory(resumed_tlr), full[meta_steps_before:])


def _unwrap(optimizer: Any) -> Any:
    while not isinstance(optimizer, TLR):
        optimizer = optimizer.optimizer
    return optimizer
