"""ntlr: Newton-based trainable learning rate for any torch.optim optimizer."""

from .factory import wrap
from .functional import (
    MetaStepDecision,
    Status,
    advance_window_,
    newton_factor,
    restart_window_,
    rollback_window_,
    undo_kept_window_,
    window_inner_products,
)
from .history import MetaStepRecord
from .param_groups import per_layer_param_groups
from .rules import RULES, PaperRule, RobustRule, RobustState, Rule, WindowStats, make_rule
from .state import plain_state_dict
from .tlr import TLR

__version__ = "0.1.0"

__all__ = [
    "RULES",
    "TLR",
    "MetaStepDecision",
    "MetaStepRecord",
    "PaperRule",
    "RobustRule",
    "RobustState",
    "Rule",
    "Status",
    "WindowStats",
    "advance_window_",
    "make_rule",
    "newton_factor",
    "per_layer_param_groups",
    "plain_state_dict",
    "restart_window_",
    "rollback_window_",
    "undo_kept_window_",
    "window_inner_products",
    "wrap",
]
