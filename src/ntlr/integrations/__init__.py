"""The trained rate where users look: optional hooks into training frameworks' logging.

Frameworks log ``param_groups[i]["lr"]``, the scheduled rate, not the one :class:`ntlr.TLR` trains. One
module per framework, each importing its framework itself, so ``import ntlr`` stays torch-only:

* :mod:`ntlr.integrations.lightning`: ``TLRMonitor``, a Lightning callback;
* :mod:`ntlr.integrations.transformers`: ``TLRLogCallback``, a Transformers ``TrainerCallback``;
* :mod:`ntlr.integrations.tensorboard`: ``write_scalars``, for a ``SummaryWriter`` (or anything with
  ``add_scalar``);
* :mod:`ntlr.integrations.metrics`: what they log, as a dict, for any other logger.
"""
