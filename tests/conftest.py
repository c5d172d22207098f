"""Test-wide setup: one torch thread (CI has 2 cores) and the local data folder when there is one."""

import os
from pathlib import Path

import torch

torch.set_num_threads(1)

# The development machines and CI keep the real data sets beside the checkout; users point NTLR_DATA_DIR
# at theirs. Nothing in the library knows about this folder.
_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "NTLR_DATA_DIR" not in os.environ and _SHARED_DATA.is_dir():
    os.environ["NTLR_DATA_DIR"] = str(_SHARED_DATA)
