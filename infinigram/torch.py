"""∞-gram interpolation while generating with a PyTorch model (optional extra ``torch``).

:class:`InfiniGramLogitsProcessor` follows the Hugging Face ``LogitsProcessor``
call protocol, so it drops into ``model.generate(logits_processor=[...])``,
but needs only torch.
"""
from __future__ import annotations

import numpy as np
import torch

from . import args
from .errors import QueryError
from .interpolate import _lam


class InfiniGramLogitsProcessor:
    """Turn a model's next-token scores into log-probabilities of the ∞-gram mixture.

    ``__call__(input_ids [batch, seq], scores [batch, vocab])`` returns
    log(λ·P∞ + (1 − λ)·softmax(scores)) per row, where P∞ is the ∞-gram
    next-token distribution of the row's tokens (its last ``max_context``
    when given) and λ is ``lam_sparse`` if that distribution has a single
    token, else ``lam_dense``. Tokens with probability 0 get −inf, so greedy
    and sampling work on the result directly. Every id in ``input_ids``
    must be a token of the index (no padding or BOS ids outside it), and the
    model's vocabulary must be the index's.
    """

    def __init__(self, engine, lam_sparse: float, lam_dense: float,
                 max_context: int | None = None):
        self.engine = engine
        self.lam_sparse = _lam(lam_sparse, "lam_sparse")
        self.lam_dense = _lam(lam_dense, "lam_dense")
        self.max_context = args.optional_integer("max_context", max_context)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.dim() != 2 or input_ids.dtype.is_floating_point or input_ids.is_complex():
            raise QueryError(f"input_ids has shape {tuple(input_ids.shape)} and dtype "
                             f"{input_ids.dtype}; pass a LongTensor [batch, seq]")
        if scores.dim() != 2 or scores.shape[0] != input_ids.shape[0]:
            raise QueryError(f"scores has shape {tuple(scores.shape)} for input_ids of shape "
                             f"{tuple(input_ids.shape)}; pass [batch, vocab] logits, one row "
                             "per sequence")
        vocab = self.engine.vocab_size
        if scores.shape[1] != vocab:
            raise QueryError(
                f"the model scores {scores.shape[1]} tokens but the index has vocab_size "
                f"{vocab}; use the index's tokenizer for the model, or slice padded logits "
                f"to scores[:, :{vocab}] before this processor")
        rows = input_ids.detach().cpu().numpy().astype(np.int64, copy=False)
        if self.max_context is not None:
            rows = rows[:, rows.shape[1] - min(self.max_context, rows.shape[1]):]
        p_inf = torch.from_numpy(np.asarray(
            self.engine.infgram_ntd_many(list(rows), dense=True), dtype=np.float64))
        p_inf = p_inf.to(scores.device)
        sparse = (p_inf > 0).sum(dim=1, keepdim=True) == 1
        lam = torch.where(sparse, torch.tensor(self.lam_sparse, dtype=torch.float64),
                          torch.tensor(self.lam_dense, dtype=torch.float64)).to(p_inf.device)
        log_nn = torch.log_softmax(scores.to(torch.float64), dim=1)
        mixed = torch.logaddexp(torch.log(lam) + torch.log(p_inf),
                                torch.log1p(-lam) + log_nn)
        return mixed.to(scores.dtype)
