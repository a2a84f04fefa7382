"""Attention over the encoder's annotations: scores, a masked softmax and the context.

Every attention module here has two methods::

    keys = attention.keys(memory)                        # once per batch: (N, S, C) -> (N, S, A)
    context, weights = attention(query, keys, memory, mask)

- ``query``: (N, T, Q), one row per decoder step (T = 1 when stepping);
- ``memory``: (N, S, C) the annotations h_1..h_S; ``mask``: (N, S), True at real positions;
- ``context``: (N, T, C) = Σ_j a_tj h_j; ``weights``: (N, T, S), each row summing to 1 over
  the real source positions and exactly 0 on padding.

Keys are projected once per batch (``keys``) and kept in :class:`Encoded`, so a decoding step
costs one query projection and one batched product.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """scores: (N, T, S), mask: (N, S) -> weights (N, T, S), 0 where mask is False.
    Every row needs at least one real position (every source has its EOS)."""
    return scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(dim=-1)


class _Attention(nn.Module):
    def keys(self, memory: Tensor) -> Tensor:
        return memory

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        """query (N, T, Q), keys (N, S, A) -> scores (N, T, S)."""
        raise NotImplementedError

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        weights = masked_softmax(self.score(query, keys), mask)
        return torch.bmm(weights, memory), weights


class AdditiveAttention(_Attention):
    """Bahdanau et al. (2015), App. A.1.2: e_tj = v_a^T tanh(W_a q_t + U_a h_j), where
    U_a h_j is precomputed for all j (``keys``). Luong et al. (2015) call it ``concat``."""

    def __init__(self, query_size: int, memory_size: int, attention_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(query_size, attention_size, bias=False)
        self.key = nn.Linear(memory_size, attention_size)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        keys: Tensor = self.key(memory)
        return keys

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        # (N, T, 1, A) + (N, 1, S, A): every step against every source position at once.
        hidden = torch.tanh(self.query(query)[:, :, None, :] + keys[:, None, :, :])
        scores: Tensor = self.v(hidden).squeeze(-1)
        return scores


class DotAttention(_Attention):
    """Luong et al. (2015), Eq. 8 ``dot``: e_tj = h_t^T h̄_j. Needs Q == C."""

    def __init__(self, query_size: int, memory_size: int, attention_size: int = 0) -> None:
        super().__init__()
        if query_size != memory_size:
            raise ValueError(
                f"dot attention needs the decoder hidden size ({query_size}) to equal the encoder output size "
                f"({memory_size}); use 'general' or 'mlp' attention, or change the sizes"
            )

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2))


class GeneralAttention(_Attention):
    """Luong et al. (2015), Eq. 8 ``general``: e_tj = h_t^T W_a h̄_j, with W_a h̄_j
    precomputed for all j (``keys``)."""

    def __init__(self, query_size: int, memory_size: int, attention_size: int = 0) -> None:
        super().__init__()
        self.key = nn.Linear(memory_size, query_size, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        keys: Tensor = self.key(memory)
        return keys

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2))


# name -> class(query_size, memory_size, attention_size)
ATTENTIONS: dict[str, type[_Attention]] = {
    "mlp": AdditiveAttention,
    "dot": DotAttention,
    "general": GeneralAttention,
}


def make_attention(kind: str, query_size: int, memory_size: int, attention_size: int) -> _Attention:
    if kind not in ATTENTIONS:
        raise ValueError(f"unknown attention {kind!r}; choose one of {', '.join(ATTENTIONS)}")
    return ATTENTIONS[kind](query_size, memory_size, attention_size)
