"""Recurrent cells as one-step equations, for the loop layer in :mod:`seq2seq.models.stack`.

A cell splits its step in two so that the loop over time stays cheap:

- :meth:`RecurrentCell.project` maps the inputs of *all* steps at once, (N, L, I) ->
  (N, L, G·H) (G gate blocks of H units), one matrix product per sequence;
- :meth:`RecurrentCell.step` computes one step from that step's projection (N, G·H), the
  state (a tuple of (N, S_k) tensors, h first) and ``h``: state[0] as the recurrent products
  see it (the state itself, or times a variational dropout mask; Gal & Ghahramani 2016).

``state_sizes`` gives S_k per state tensor; ``state_sizes[0]`` is the output size. Gate
blocks follow torch's order (i, f, g, o for LSTMs; r, z, n for GRUs), so weights copy
to and from torch.nn.LSTM / GRU block by block.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

State = tuple[Tensor, ...]


class RecurrentCell(nn.Module):
    """What every cell has: input weights W (G·H, I) with bias b, recurrent weights
    U (G·H, S_0), initialisation, and the two halves of a step."""

    gates: ClassVar[int] = 1
    forget_gate: ClassVar[int | None] = None  # index of the forget-gate block, LSTMs only

    def __init__(self, input_size: int, hidden_size: int, recurrent_size: int | None = None) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        g = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g, input_size))
        self.weight_hh = nn.Parameter(torch.empty(g, recurrent_size or hidden_size))
        self.bias = nn.Parameter(torch.empty(g))
        self.state_sizes: tuple[int, ...] = (recurrent_size or hidden_size,)

    def reset_parameters(self, forget_bias: float = 1.0, recurrent_init: str = "default") -> None:
        """torch's RNN initialisation, U(−1/√H, 1/√H) for every weight and bias; then
        ``orthogonal`` recurrent weights per gate block (Saxe et al. 2014) if asked; then the
        forget-gate bias (Gers et al. 2000; Jozefowicz et al. 2015 recommend 1)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for p in self.parameters(recurse=False):
                p.uniform_(-bound, bound)
            for module in self.children():
                if isinstance(module, nn.LayerNorm):
                    module.reset_parameters()
            init_recurrent(self.weight_hh, self.gates, recurrent_init)
            if self.forget_gate is not None:
                h = self.hidden_size
                self.bias[self.forget_gate * h : (self.forget_gate + 1) * h].fill_(forget_bias)

    def project(self, x: Tensor) -> Tensor:
        """(N, L, I) -> (N, L, G·H): W x_t + b for every step in one product."""
        return F.linear(x, self.weight_ih, self.bias)

    def step(self, xp: Tensor, state: State, h: Tensor) -> State:
        raise NotImplementedError


def init_recurrent(weight: Tensor, gates: int, kind: str) -> None:
    """Initialise recurrent weights (G·H, S) in place: ``default`` keeps them, ``orthogonal``
    makes each gate block (H, S) orthogonal (Saxe et al. 2014; Le et al. 2015)."""
    if kind not in RECURRENT_INITS:
        raise ValueError(f"unknown recurrent_init {kind!r}; choose one of {', '.join(RECURRENT_INITS)}")
    if kind == "orthogonal":
        for block in weight.detach().chunk(gates, dim=0):
            nn.init.orthogonal_(block)


RECURRENT_INITS = ("default", "orthogonal")


class ElmanCell(RecurrentCell):
    """Elman (1990): h' = tanh(W x + b + U h). State (h,)."""

    def step(self, xp: Tensor, state: State, h: Tensor) -> State:
        return (torch.tanh(xp + F.linear(h, self.weight_hh)),)


class GRUCell(RecurrentCell):
    """Cho et al. (2014), Eq. 5–8, in torch's form (r applied after the recurrent product):

        r = σ(W_r x + b_r + U_r h + c_r)        z = σ(W_z x + b_z + U_z h + c_z)
        n = tanh(W_n x + b_n + r ⊙ (U_n h + c_n))
        h' = (1 − z) ⊙ n + z ⊙ h

    The recurrent bias c is kept apart from b because r multiplies c_n. State (h,)."""

    gates = 3

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size))

    def step(self, xp: Tensor, state: State, h: Tensor) -> State:
        xr, xz, xn = xp.chunk(3, dim=-1)
        hr, hz, hn = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (n + z * (state[0] - n),)


class LSTMCell(RecurrentCell):
    """Hochreiter & Schmidhuber (1997) with the forget gate of Gers et al. (2000):

        (i, f, g, o) = W x + b + U h
        c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)          h' = σ(o) ⊙ tanh(c')

    State (h, c)."""

    gates = 4
    forget_gate = 1

    def __init__(self, input_size: int, hidden_size: int, recurrent_size: int | None = None) -> None:
        super().__init__(input_size, hidden_size, recurrent_size)
        self.state_sizes = (recurrent_size or hidden_size, hidden_size)

    def step(self, xp: Tensor, state: State, h: Tensor) -> State:
        i, f, g, o = (xp + F.linear(h, self.weight_hh)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class PeepholeLSTMCell(LSTMCell):
    """Gers, Schraudolph & Schmidhuber (2003), Sec. 2.1 (peephole connections): the gates
    also see the cell state through diagonal weights p (the input and forget gates the old
    c, the output gate the new c'):

        (i, f, g, o) = W x + b + U h
        c' = σ(f + p_f ⊙ c) ⊙ c + σ(i + p_i ⊙ c) ⊙ tanh(g)
        h' = σ(o + p_o ⊙ c') ⊙ tanh(c')

    State (h, c); ``weight_peep`` is (3, H): p_i, p_f, p_o."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.weight_peep = nn.Parameter(torch.empty(3, hidden_size))

    def step(self, xp: Tensor, state: State, h: Tensor) -> State:
        i, f, g, o = (xp + F.linear(h, self.weight_hh)).chunk(4, dim=-1)
        c_old = state[1]
        c = torch.sigmoid(f + self.weight_peep[1] * c_old) * c_old
        c = c + torch.sigmoid(i + self.weight_peep[0] * c_old) * torch.tanh(g)
        return torch.sigmoid(o + self.weight_peep[2] * c) * torch.tanh(c), c


class ProjectedLSTMCell(LSTMCell):
    """Sak, Senior & Beaufays (2014), Eq. 1–7 (LSTMP, without peepholes): an LSTM whose
    output, which is also its recurrent input, is a projection r of P < H units:

        (i, f, g, o) = W x + b + U r
        c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)          r' = W_r (σ(o) ⊙ tanh(c'))

    State (r, c) of sizes (P, H); torch.nn.LSTM(proj_size=P) computes the same."""

    def __init__(self, input_size: int, hidden_size: int, proj_size: int) -> None:
        if not 0 < proj_size < hidden_size:
            raise ValueError(f"proj_size must be in 1..hidden_size-1 ({hidden_size - 1}), got {proj_size}")
        super().__init__(input_size, hidden_size, recurrent_size=proj_size)
        self.weight_hr = nn.Parameter(torch.empty(proj_size, hidden_size))

    def step(self, xp: Tensor, state: State, h: Tensor) -> State:
        i, f, g, o = (xp + F.linear(h, self.weight_hh)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        return F.linear(torch.sigmoid(o) * torch.tanh(c), self.weight_hr), c


class LayerNormGRUCell(RecurrentCell):
    """A GRU with layer normalisation (Ba, Kiros & Hinton 2016, Sec. 3.1, Eq. 4) of the
    input and the recurrent pre-activations, each over all 3H units, as their LN-LSTM does:

        (x_r, x_z, x_n) = LN(W x) + b           (h_r, h_z, h_n) = LN(U h)
        r = σ(x_r + h_r)    z = σ(x_z + h_z)    n = tanh(x_n + r ⊙ h_n)
        h' = (1 − z) ⊙ n + z ⊙ h

    LN(W x) holds no per-step state, so :meth:`project` normalises all steps at once.
    State (h,)."""

    gates = 3

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.ln_ih = nn.LayerNorm(3 * hidden_size, bias=False)
        self.ln_hh = nn.LayerNorm(3 * hidden_size, bias=False)

    def project(self, x: Tensor) -> Tensor:
        return self.ln_ih(F.linear(x, self.weight_ih)) + self.bias

    def step(self, xp: Tensor, state: State, h: Tensor) -> State:
        xr, xz, xn = xp.chunk(3, dim=-1)
        hr, hz, hn = self.ln_hh(F.linear(h, self.weight_hh)).chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (n + z * (state[0] - n),)


class LayerNormLSTMCell(LSTMCell):
    """Ba, Kiros & Hinton (2016), supplementary material, the layer-normalised LSTM:

        (i, f, g, o) = LN(W x; α_2) + LN(U h; α_1) + b
        c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)          h' = σ(o) ⊙ tanh(LN(c'; α_3, β_3))

    (the LN biases β_1, β_2 are folded into b). State (h, c)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.ln_ih = nn.LayerNorm(4 * hidden_size, bias=False)
        self.ln_hh = nn.LayerNorm(4 * hidden_size, bias=False)
        self.ln_c = nn.LayerNorm(hidden_size)

    def project(self, x: Tensor) -> Tensor:
        return self.ln_ih(F.linear(x, self.weight_ih)) + self.bias

    def step(self, xp: Tensor, state: State, h: Tensor) -> State:
        i, f, g, o = (xp + self.ln_hh(F.linear(h, self.weight_hh))).chunk(4, dim=-1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(self.ln_c(c)), c
