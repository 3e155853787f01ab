"""Model families: what a handwriting synthesis network must provide.

One folder per family (``graves/``: the Graves 2013 LSTM with its attention window); each
exports its network class as ``Model``, a ``SynthesisModel``. Training (``loop.py``,
``train.py``), sampling (``sampling.py``) and evaluation (``evaluate.py``) use a network only
through this interface, so a new family needs no changes outside its folder. The registry that
finds a family by the ``arch`` name its files carry is ``handsynth.checkpoint``.

The contract:
- ``Config``: a frozen dataclass with ``preset(name, alphabet_size)``, ``to_dict()`` and
  ``from_dict(d)``; the network is built as ``Model(config)``.
- optionally ``fit(config, train_offsets) -> config``, a classmethod: the config fitted to the
  training lines (standardised offsets) before the network is built (the transformer fits its
  token bins this way; they travel in the config, so in every model file);
- ``loss(batch, warmup) -> (nll_sum, count)``: the summed negative log-likelihood of a
  ``data.corpus.Batch`` (standardised pen offsets and character codes) and the number of pen
  steps it covers. ``warmup`` in [0, 1] is the share of the training's warm-up still ahead (1
  at the first step, 0 once it is over): a family may use it (the LSTM guides its window) or
  ignore it. A family whose guide is a penalty rather than a blend sets ``guide_stays``: its
  training may keep a floor of it after the warm-up (``--attention-floor``). The training loop
  runs it under bfloat16 autocast when asked.
- ``start(tables, primers) -> Stepper``: a batch of lines ready to write, one row per line;
  ``tables`` (``sampling.Tables``) holds each row's text codes, random numbers, step caps and
  the arrays the stepper records into; ``primers`` has one entry per text (row r writes text
  r % ``tables.n_texts``): None or that text's style sample as standardised offsets, texts of
  one style sharing one array (its text is already the first ``tables.prefix[r]`` characters
  of the row). A family that can write several styles in one batch sets ``mixes_styles``;
  one that cannot is only given batches of one style.
- the ``Stepper`` it returns advances its live rows one pen step per call (below).

Alignment: a stepper records, per pen step, weights over the row's text positions plus one
"after the end" position (``tables.phi_all``), and sets ``tables.passed`` once the row has
written its last character. The LSTM's are its attention window (Graves' stop rule: the weight
after the end outweighs every character's). A family whose attention is not monotone (a
transformer's cross-attention) records its attention as the alignment but signals the end
itself, e.g. with an end token, and records "after the end" (weight 1 on the last position)
from then on: the policy's narrowing uses ``progress`` and its trimming and word widths use the
alignment's argmax, so both keep working.
"""
from __future__ import annotations

from typing import ClassVar, Protocol

import numpy as np
from torch import nn


class Stepper(Protocol):
    """A batch of lines being written. Rows keep their place in the tables when others leave."""

    rows: np.ndarray       # (live,) the live rows' places in the tables
    progress: np.ndarray   # (live,) the text position (past the primer's text) each row is writing
    stop: np.ndarray | None  # (live,) bool, set by a family that runs a fused copy of the stop rule

    def __call__(self, t: int) -> None:
        """Write pen step ``t`` of every live row: record the offset (standardised) in
        ``tables.out_steps[rows, t]`` and the alignment in ``tables.phi_all[rows, t]``, set
        ``tables.passed[rows]`` for rows past their text, update ``progress``. A stepper with a
        fused copy of ``sampling.stop_rule`` (the LSTM's compiled step) also sets ``stop``;
        otherwise ``stop`` is None and the sampler applies the rule."""

    def select(self, keep: np.ndarray) -> None:
        """Keep only the live rows where ``keep`` (a bool mask over the live rows) is true."""


class SynthesisModel(nn.Module):
    """A handwriting synthesis network (see the module docstring for the contract)."""

    arch: ClassVar[str]     # the family's name in model files
    Config: ClassVar[type]  # its frozen config dataclass
    mixes_styles: ClassVar[bool] = False   # start() takes batches whose texts have different primers
    alignment: ClassVar[str] = "attention window"   # what its recorded alignment is, for plots
    guide_stays: ClassVar[bool] = False   # its warm-up guide may stay on at a floor (a penalty, not a blend)

    def loss(self, batch, warmup: float = 0.0):
        raise NotImplementedError

    def start(self, tables, primers: list) -> Stepper:
        raise NotImplementedError

    def adopt(self, state: dict, old_chars: str, new_chars: str, fill: dict | None = None) -> None:
        """Load the weights ``state`` of a network of this family trained on the alphabet
        ``old_chars`` into this one, built for ``new_chars`` (warm start on a grown alphabet);
        the characters ``old_chars`` lacks start from ``fill``'s weights (a state of this
        network's shape) where given.
        A family that cannot map characters accepts only an unchanged alphabet."""
        if old_chars != new_chars:
            from ..errors import HandsynthError
            raise HandsynthError(f"the {self.arch} family cannot warm-start on a different alphabet")
        self.load_state_dict({k: v.float() for k, v in state.items()})
