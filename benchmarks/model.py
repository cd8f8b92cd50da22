"""A small GPT-style language model for the interpolation benchmark (torch, CPU).

Pre-norm transformer, learned positions, input embedding shared with the
output layer. The input vocabulary has one extra id, ``vocab_size``, used as
BOS at the start of every document; the model never predicts it.
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    context: int = 128
    d_model: int = 160
    n_layer: int = 4
    n_head: int = 5
    dropout: float = 0.0


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(),
                                 nn.Linear(4 * cfg.d_model, cfg.d_model))
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_head, d // self.n_head).unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2), is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size + 1, cfg.d_model)
        self.pos = nn.Embedding(cfg.context, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln = nn.LayerNorm(cfg.d_model)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, ids):
        """Logits [batch, t, vocab_size] of the next token after each input position."""
        t = ids.shape[1]
        x = self.tok(ids) + self.pos(torch.arange(t, device=ids.device))
        for blk in self.blocks:
            x = blk(x)
        return self.ln(x) @ self.tok.weight[: self.cfg.vocab_size].T

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def training_windows(docs: list[np.ndarray], vocab_size: int) -> np.ndarray:
    """All documents as one stream, each preceded by BOS (= vocab_size)."""
    parts = []
    for d in docs:
        parts.append(np.array([vocab_size], dtype=np.int64))
        parts.append(np.asarray(d, dtype=np.int64))
    return np.concatenate(parts)


def train(model: GPT, stream: np.ndarray, *, seconds: float, max_steps: int, batch: int,
          lr: float = 3e-3, seed: int = 0, log=print) -> dict:
    """AdamW with warm-up and cosine decay on random windows of ``stream``.

    Stops after ``max_steps`` or ``seconds``, whichever comes first; the
    schedule is laid out for a time budget (progress = max(step share, time
    share)) so a short budget still ends with a decayed learning rate.
    """
    ctx = model.cfg.context
    gen = np.random.default_rng(seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    model.train()
    start = time.perf_counter()
    step, losses = 0, []
    while step < max_steps:
        progress = max(step / max_steps, (time.perf_counter() - start) / seconds)
        if progress >= 1.0:
            break
        warm = min(1.0, progress / 0.03)
        for g in opt.param_groups:
            g["lr"] = lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        starts = gen.integers(0, len(stream) - ctx - 1, batch)
        xy = torch.from_numpy(np.stack([stream[s:s + ctx + 1] for s in starts]))
        x, y = xy[:, :-1], xy[:, 1:]
        logits = model(x)
        # targets equal to BOS (a document's first token after the previous one) are skipped
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                               ignore_index=model.cfg.vocab_size)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 100 == 0:
            log(f"  step {step}: loss {np.mean(losses[-100:]):.3f} "
                f"({time.perf_counter() - start:.0f} s)")
    elapsed = time.perf_counter() - start
    return {"steps": step, "seconds": elapsed, "tokens": step * batch * ctx,
            "final_loss": float(np.mean(losses[-50:])) if losses else math.nan}


@torch.no_grad()
def token_probs(model: GPT, doc: np.ndarray, batch_windows: int = 64) -> np.ndarray:
    """P_nn(doc[t] | doc[:t]) for every t, with BOS before the document.

    Windows of ``context`` tokens advance by half a window, so every
    prediction past the first window sees at least half a window of context.
    """
    model.eval()
    ctx, vocab = model.cfg.context, model.cfg.vocab_size
    seq = np.concatenate([[vocab], np.asarray(doc, dtype=np.int64)])
    n = len(doc)
    out = np.empty(n, dtype=np.float64)
    if n == 0:
        return out
    stride = ctx // 2
    # window w covers seq[s:s+ctx] and fills predictions for targets seq[s+1+k], k >= keep
    jobs = []
    s = 0
    while True:
        keep = 0 if s == 0 else ctx - stride
        jobs.append((s, keep))
        if s + ctx >= n:
            break
        s += stride
    for i in range(0, len(jobs), batch_windows):
        chunk = jobs[i:i + batch_windows]
        width = min(ctx, len(seq) - 1)
        x = np.full((len(chunk), width), vocab, dtype=np.int64)
        lens = []
        for r, (s, _) in enumerate(chunk):
            w = seq[s:s + width]
            w = w[: len(seq) - 1 - s]  # the last token is only a target
            x[r, : len(w)] = w
            lens.append(len(w))
        logits = model(torch.from_numpy(x))
        lse = torch.logsumexp(logits, dim=-1)
        for r, (s, keep) in enumerate(chunk):
            tgt = torch.from_numpy(seq[s + 1 + keep: s + 1 + lens[r]])
            pos = torch.arange(keep, lens[r])
            logp = logits[r, pos, tgt].double() - lse[r, pos].double()
            out[s + keep: s + lens[r]] = torch.exp(logp).numpy()
    return out
