"""Workloads: one declarative spec per (data set, model) pair, named ``<dataset>_<model>``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from .budgets import BUDGETS, LONG_OVER_PAPER

__all__ = ["BUDGETS", "WORKLOADS", "Budget", "WorkloadSpec", "get_workload"]


@dataclass(frozen=True)
class Budget:
    """How much of a workload to run: epochs, how many examples per split, how often to evaluate.

    ``model`` overrides the spec's model keyword arguments (a narrower network for the CPU budget).
    ``image_size`` is the side of the square crops a streaming workload decodes (None: the loader's 224).
    ``steps_per_epoch`` makes an epoch that many steps, for a task that draws its batches at random rather
    than passing over a data set (the language model's crops); the other tasks leave it None (an epoch is
    a pass over the training examples).
    """

    epochs: int
    train_limit: int | None = None
    test_limit: int | None = None
    eval_every: int = 1  # epochs
    model: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None
    steps_per_epoch: int | None = None


@dataclass(frozen=True)
class WorkloadSpec:
    """A data set, a model, a loss and the budgets to train it under.

    ``task`` selects the training loop: ``classification`` (cross-entropy on in-memory images),
    ``streaming_classification`` (ImageFolder batches decoded on the fly), ``regression`` (mean squared
    error; the excess over the data set's known optimum is reported) or ``translation`` (teacher-forced
    token cross-entropy, validation loss and BLEU) or ``language_model`` (next-character cross-entropy on
    random crops of a corpus; an epoch is the budget's ``steps_per_epoch``). ``runner.TASKS`` maps each to
    its training loop.
    """

    name: str
    dataset: str
    model: str
    description: str
    task: str
    batch_size: int
    budgets: dict[str, Budget]
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    augment: str | None = None  # "crop_flip": 4-pixel-padded random crop + horizontal flip, per batch
    metrics: tuple[str, ...] = ("loss", "accuracy")

    def budget(self, name: str) -> Budget:
        if name == "long" and name not in self.budgets and "paper" in self.budgets:
            paper = self.budgets["paper"]
            return replace(paper, epochs=paper.epochs * LONG_OVER_PAPER)
        if name not in self.budgets:
            known = sorted({*self.budgets, *(("long",) if "paper" in self.budgets else ())})
            raise ValueError(f"budget must be one of {known}, got {name!r}")
        return self.budgets[name]

    def model_options(self, budget: Budget) -> dict[str, Any]:
        """The model's keyword arguments under ``budget``: the spec's, overridden by the budget's."""
        return {**self.model_kwargs, **budget.model}

    def build_model(self, data: Any, budget: Budget) -> nn.Module:
        return MODEL_BUILDERS[self.model](data, self.model_options(budget))


def _mlp(data: Any, kwargs: dict[str, Any]) -> nn.Module:
    from .models import mlp

    _, c, h, w = data.train_inputs.shape
    return mlp(c * h * w, data.num_classes, **kwargs)


def _linear(data: Any, kwargs: dict[str, Any]) -> nn.Module:
    from .models import linear

    features = data.train_inputs[0].numel()
    return linear(features, getattr(data, "num_classes", 1), **kwargs)


def _wrn(data: Any, kwargs: dict[str, Any]) -> nn.Module:
    from .models import wide_resnet

    return wide_resnet(num_classes=data.num_classes, in_channels=data.train_inputs.shape[1], **kwargs)


def _resnet50(data: Any, kwargs: dict[str, Any]) -> nn.Module:
    from .models import resnet50

    return resnet50(num_classes=data.num_classes, **kwargs)


def _transformer(data: Any, kwargs: dict[str, Any]) -> nn.Module:
    from .models import Seq2SeqTransformer

    return Seq2SeqTransformer(len(data.src_vocab), len(data.tgt_vocab), **kwargs)


def _char_transformer(data: Any, kwargs: dict[str, Any]) -> nn.Module:
    from .models import CharTransformer

    return CharTransformer(len(data.vocab), **kwargs)


MODEL_BUILDERS: dict[str, Callable[[Any, dict[str, Any]], nn.Module]] = {
    "mlp": _mlp,
    "linear": _linear,
    "wrn16_4": _wrn,
    "resnet50": _resnet50,
    "transformer": _transformer,
    "char_transformer": _char_transformer,
}


def _mlp_workload(dataset: str, description: str) -> WorkloadSpec:
    return WorkloadSpec(
        name=f"{dataset}_mlp",
        dataset=dataset,
        model="mlp",
        description=description,
        task="classification",
        batch_size=128,
        budgets={
            "smoke": Budget(epochs=1, train_limit=512, test_limit=256),
            "cpu": Budget(epochs=3),
            "paper": Budget(epochs=20),
        },
        model_kwargs={"hidden": 1000},
    )


def _wrn_workload(dataset: str, classes: int) -> WorkloadSpec:
    return WorkloadSpec(
        name=f"{dataset}_wrn16_4",
        dataset=dataset,
        model="wrn16_4",
        description=f"Wide-ResNet 16-4 on CIFAR-{classes}, random crop (pad 4) + flip per batch",
        task="classification",
        batch_size=128,
        budgets={
            "smoke": Budget(
                epochs=1, train_limit=256, test_limit=128, model={"depth": 10, "widen_factor": 1}
            ),
            # Two shared CPU cores: WRN-10-1 takes 0.5 s a step at batch 128 on one core, so a 5k-image
            # subset for 2 epochs keeps a run near a minute.
            "cpu": Budget(
                epochs=2,
                train_limit=5_000,
                test_limit=1_000,
                eval_every=2,  # evaluating 6k images costs as much as an epoch: once, at the end
                model={"depth": 10, "widen_factor": 1},
            ),
            "paper": Budget(epochs=200),
        },
        model_kwargs={"depth": 16, "widen_factor": 4},
        augment="crop_flip",
    )


def _transformer_workload(
    name: str, dataset: str, description: str, *, cpu_epochs: int, cpu_train_limit: int | None = None
) -> WorkloadSpec:
    return WorkloadSpec(
        name=name,
        dataset=dataset,
        model="transformer",
        description=description,
        task="translation",
        batch_size=128,
        budgets={
            "smoke": Budget(
                epochs=1, train_limit=256, test_limit=64, model={"d_model": 64, "dim_feedforward": 128}
            ),
            "cpu": Budget(
                epochs=cpu_epochs,
                train_limit=cpu_train_limit,
                model={"d_model": 128, "dim_feedforward": 256},
            ),
            "paper": Budget(epochs=18),
        },
        # The paper's: 8 heads, 3 encoder and 3 decoder layers (the PyTorch translation tutorial's model).
        model_kwargs={
            "d_model": 512,
            "nhead": 8,
            "num_encoder_layers": 3,
            "num_decoder_layers": 3,
            "dim_feedforward": 512,
        },
        metrics=("loss", "bleu"),
    )


# A language model's epoch: this many steps of random crops (about 0.3 passes over the 0.84M training
# characters at batch 16 × 64), so budgets count in the same units as the other workloads' and a run is
# evaluated every 250 steps.
LM_STEPS_PER_EPOCH = 250

CHAR_TRANSFORMER = WorkloadSpec(
    name="char_transformer",
    dataset="ding_en_chars",
    model="char_transformer",
    description="GPT-style character language model (2 pre-norm layers, d_model 128, context 64) on the "
    "Ding dictionary's English example sentences; loss and bits per character",
    task="language_model",
    # 82 ms of CPU time a step at batch 16 on one core: the cpu budget (3000 steps, 12 evaluations) took 4.1
    # minutes of CPU (10 of wall time on two cores under a load of 3-6); AdamW at 3e-3 ended at 2.40
    # bits per character on validation (2.39 on the training crops).
    batch_size=16,
    budgets={
        "smoke": Budget(
            epochs=2,
            steps_per_epoch=10,
            eval_every=2,  # once, at the end
            test_limit=64,  # validation crops: a smoke run evaluates 64 of them
            model={"context": 32, "d_model": 32, "nhead": 2, "num_layers": 1, "dim_feedforward": 64},
        ),
        "cpu": Budget(epochs=12, steps_per_epoch=LM_STEPS_PER_EPOCH),
        "paper": Budget(epochs=40, steps_per_epoch=LM_STEPS_PER_EPOCH),
    },
    model_kwargs={"context": 64, "d_model": 128, "nhead": 4, "num_layers": 2, "dim_feedforward": 512},
    metrics=("loss", "bits_per_char"),
)

WORKLOADS: dict[str, WorkloadSpec] = {
    spec.name: spec
    for spec in [
        _mlp_workload("mnist", "MLP 784-1000-10 on MNIST (the paper's MNIST setting)"),
        _mlp_workload("fashion_mnist", "MLP 784-1000-10 on Fashion-MNIST"),
        WorkloadSpec(
            name="digits_mlp",
            dataset="digits",
            model="mlp",
            description="MLP 64-256-10 on scikit-learn's 8x8 digits: the embedded default, offline",
            task="classification",
            # 90 steps an epoch: TLR's windows (p of an epoch) must span enough steps to average the
            # mini-batch noise; at batch 64 a window is 5 steps.
            batch_size=16,
            budgets={
                "smoke": Budget(epochs=1, train_limit=256, test_limit=128),
                "cpu": Budget(epochs=10),
                "paper": Budget(epochs=30),
            },
            model_kwargs={"hidden": 256},
        ),
        WorkloadSpec(
            name="digits_logreg",
            dataset="digits",
            model="linear",
            description="multinomial logistic regression on scikit-learn's 8x8 digits: convex",
            task="classification",
            batch_size=64,
            budgets={
                "smoke": Budget(epochs=1, train_limit=256, test_limit=128),
                "cpu": Budget(epochs=10),
                "paper": Budget(epochs=30),
            },
        ),
        WorkloadSpec(
            name="lstsq_linear",
            dataset="lstsq",
            model="linear",
            description="least squares, 64 features, Hessian condition 1e3, known optimum (excess loss)",
            task="regression",
            batch_size=64,
            budgets={
                "smoke": Budget(epochs=1, train_limit=256),
                "cpu": Budget(epochs=10),
                "paper": Budget(epochs=30),
            },
            metrics=("loss", "excess_loss"),
        ),
        _wrn_workload("cifar10", 10),
        _wrn_workload("cifar100", 100),
        WorkloadSpec(
            name="imagenet_resnet50",
            dataset="imagenet",
            model="resnet50",
            description="ResNet-50 on an ImageFolder tree (users' data, GPUs; paper: batch 96, 80 epochs)",
            task="streaming_classification",
            batch_size=96,
            budgets={
                # 64-pixel crops: ResNet-50 on 224-pixel images is seconds a step on a CPU.
                "smoke": Budget(epochs=1, train_limit=8, test_limit=4, image_size=64),
                "cpu": Budget(epochs=1, train_limit=2_000, test_limit=500),
                "paper": Budget(epochs=80),
            },
        ),
        _transformer_workload(
            "translation_transformer",
            "translation_de_en",
            "Seq2Seq Transformer (8 heads, 3+3 layers) German→English; loss and BLEU",
            # 1.5-4 s a step at batch 128 on a shared CPU core (the 7.6k-word output layer dominates).
            cpu_epochs=2,
            cpu_train_limit=4_000,
        ),
        _transformer_workload(
            "multi30k_transformer",
            "multi30k",
            "The paper's translation setting on Multi30k (users' files via --data-dir)",
            cpu_epochs=4,
        ),
        CHAR_TRANSFORMER,
    ]
}


def get_workload(name: str) -> WorkloadSpec:
    if name not in WORKLOADS:
        raise ValueError(f"workload must be one of {sorted(WORKLOADS)}, got {name!r}")
    return WORKLOADS[name]
