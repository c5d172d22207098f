"""ntlr: Newton-based trainable learning rate for any torch.optim optimizer."""

from .factory import wrap
from .functional import MetaStepDecision, close_window_, newton_factor, restart_window_
from .history import MetaStepRecord
from .param_groups import per_layer_param_groups
from .tlr import TLR

__version__ = "0.1.0"

__all__ = [
    "TLR",
    "MetaStepDecision",
    "MetaStepRecord",
    "close_window_",
    "newton_factor",
    "per_layer_param_groups",
    "restart_window_",
    "wrap",
]
