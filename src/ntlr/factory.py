"""One-line constructors for the common case: build the inner optimizer and wrap it."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from .tlr import TLR

__all__ = ["wrap"]

_TLR_KEYS = frozenset(inspect.signature(TLR.__init__).parameters) - {"self", "optimizer"}


def wrap(
    optimizer_class: type[Optimizer] | str,
    params: Iterable[Any],
    **kwargs: Any,
) -> TLR:
    """Build ``optimizer_class(params, **optimizer_kwargs)`` and wrap it in :class:`TLR`.

    Keyword arguments that :class:`TLR`'s constructor takes (``update_every``, ``steps_per_epoch``, ``p``,
    ``gamma``, ``max_factor``, ``loss_guard``, ...) go to the wrapper, the rest to the optimizer. A name
    both take (``foreach``, ``fused``) goes to the optimizer, as it reads in the call
    (``wrap("AdamW", ..., fused=True)`` is a fused AdamW); TLR's own takes a ``tlr_`` prefix
    (``tlr_foreach=False``). ``optimizer_class`` may be a class or the name of one in ``torch.optim``
    (``"SGD"``, ``"AdamW"``, ...).

    Example:
        >>> model = torch.nn.Linear(4, 2)
        >>> opt = wrap("SGD", model.parameters(), lr=0.1, momentum=0.9, steps_per_epoch=100)
        >>> opt.update_every
        20
    """
    if isinstance(optimizer_class, str):
        found = getattr(torch.optim, optimizer_class, None)
        if not (isinstance(found, type) and issubclass(found, Optimizer)):
            raise ValueError(
                f"optimizer_class {optimizer_class!r} is not an optimizer in torch.optim"
                + _did_you_mean(optimizer_class)
            )
        optimizer_class = found
    elif not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
        raise TypeError(
            f"optimizer_class must be a torch.optim.Optimizer subclass or its name, got {optimizer_class!r}"
        )
    shared = _TLR_KEYS & set(inspect.signature(optimizer_class.__init__).parameters)
    tlr_kwargs = {}
    for key in list(kwargs):
        name = key.removeprefix("tlr_")
        if key.startswith("tlr_"):
            if name not in _TLR_KEYS:
                raise TypeError(
                    f"{key}: TLR takes no argument {name!r} (it takes {', '.join(sorted(_TLR_KEYS))})"
                )
            tlr_kwargs[name] = kwargs.pop(key)
        elif key in _TLR_KEYS and key not in shared:
            tlr_kwargs[key] = kwargs.pop(key)
    _check_optimizer_keys(optimizer_class, kwargs)
    return TLR(optimizer_class(params, **kwargs), **tlr_kwargs)


def _check_optimizer_keys(optimizer_class: type[Optimizer], kwargs: dict[str, Any]) -> None:
    """A key neither the optimizer nor TLR takes (``updat_every``): name it and the closest of both's,
    rather than let the optimizer's constructor reject it without a word about TLR's."""
    accepted = inspect.signature(optimizer_class.__init__).parameters
    if any(param.kind is inspect.Parameter.VAR_KEYWORD for param in accepted.values()):
        return  # the optimizer takes any keyword: nothing to tell
    known = sorted((set(accepted) - {"self", "params"}) | _TLR_KEYS)
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"{key}: neither {optimizer_class.__name__} nor TLR takes this argument{hint}")


def _did_you_mean(name: str) -> str:
    """``"; did you mean 'AdamW'?"`` for the torch.optim optimizer closest to ``name``, or ``""``."""
    names = [
        n
        for n, obj in vars(torch.optim).items()
        if isinstance(obj, type) and issubclass(obj, Optimizer) and obj is not Optimizer
    ]
    # Case-insensitive first: "Adamw" and "adamw" both mean AdamW.
    by_lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
    return f"; did you mean {by_lower[close[0]]!r}?" if close else ""
