"""Fig. 4: ResNet-50 on ImageNet, TLR against SGD multi-step, Adam and SPS."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...records import RunRecord
from ..select import select
from .comparison import eval_curves
from .generic import final_numbers_table

if TYPE_CHECKING:
    from ...experiments import Experiment

__all__ = ["imagenet"]


def imagenet(exp: Experiment, records: list[RunRecord], out: Path) -> list[str]:
    curves = eval_curves(
        sorted(select(records, seed=0), key=lambda r: r["config"]["optimizer"]), out, "fig4_imagenet.png"
    )
    return [
        *final_numbers_table(records),
        f"![Fig. 4 reproduced: training loss and top-1 test accuracy]({curves})",
        "",
    ]
