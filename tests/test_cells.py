"""Every cell: shapes, padding invariance, the documented equations, fused = loop parity,
gradients, initialisation, residual stacks and variational dropout."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY, data_overrides, write_toy_corpus
from torch import Tensor

from seq2seq import config as config_module
from seq2seq.cli import main
from seq2seq.config import DecoderConfig, EncoderConfig, ModelConfig
from seq2seq.models import build_model
from seq2seq.models.cells import CELLS, TorchRecurrent, make_recurrent
from seq2seq.models.stack import LoopLayer, RecurrentStack

ALL = list(CELLS)
STANDARD = ["rnn", "gru", "lstm", "lstmp"]  # those with a fused torch kernel
IN, H, P = 5, 6, 4  # input, hidden and projection sizes of the small layers below


def options(cell: str, **kw: Any) -> dict[str, Any]:
    return {"proj_size": P, **kw} if cell == "lstmp" else kw


def padded_batch(lengths: list[int], size: int = IN, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), size, generator=g)
    for i, n in enumerate(lengths):
        x[i, n:] = 0.0
    return x, torch.tensor(lengths)


def randomize(module: torch.nn.Module, seed: int = 0) -> None:
    """Non-default values everywhere (LayerNorm gains, peepholes, ...), so no term can hide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=g) - 0.5)


def test_config_knows_every_cell() -> None:
    assert tuple(CELLS) == config_module.CELLS


@pytest.mark.parametrize(("cell", "bidirectional", "layers"), list(itertools.product(ALL, [False, True], [1, 2])))
def test_shapes_and_padding_invariance(cell: str, bidirectional: bool, layers: int) -> None:
    torch.manual_seed(0)
    rnn = make_recurrent(cell, IN, H, layers, bidirectional, dropout=0.3, **options(cell, residual=layers > 1)).eval()
    x, lengths = padded_batch([5, 3, 1])
    out, state = rnn(x, lengths=lengths)
    d = 2 if bidirectional else 1
    sizes = (P, H) if cell == "lstmp" else (H, H) if "lstm" in cell else (H,)
    assert rnn.state_sizes == sizes and rnn.num_states == len(sizes)
    assert out.shape == (3, 5, rnn.output_size) and rnn.output_size == d * sizes[0]
    assert [s.shape for s in state] == [(3, layers * d, size) for size in sizes]
    assert torch.all(out[1, 3:] == 0) and torch.all(out[2, 1:] == 0)
    for i, n in enumerate(lengths.tolist()):  # each sequence alone, unpadded
        alone_out, alone_state = rnn(x[i : i + 1, :n], lengths=lengths[i : i + 1])
        torch.testing.assert_close(alone_out[0], out[i, :n], atol=1e-6, rtol=1e-5)
        for a, b in zip(alone_state, state):
            torch.testing.assert_close(a[0], b[i], atol=1e-6, rtol=1e-5)


def layer_norm(v: Tensor, gain: Tensor, bias: Tensor | None = None) -> Tensor:
    mean, var = v.mean(-1, keepdim=True), v.var(-1, unbiased=False, keepdim=True)
    out = (v - mean) / torch.sqrt(var + 1e-5) * gain
    return out if bias is None else out + bias


def reference(cell: str, p: dict[str, Tensor], x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The equations of the cells' docstrings, one step at a time: x (N, L, I) -> outputs."""
    sig, tanh = torch.sigmoid, torch.tanh
    h, c = state[0], state[-1]
    outputs = []
    for t in range(x.size(1)):
        wx = x[:, t] @ p["W"].T
        if cell.startswith("layernorm"):
            wx, uh = layer_norm(wx, p["g_ih"]) + p["b"], layer_norm(h @ p["U"].T, p["g_hh"])
        else:
            wx, uh = wx + p["b"], h @ p["U"].T + p.get("c", 0.0)
        if cell == "rnn":
            h = tanh(wx + uh)
        elif cell.endswith("gru"):
            (xr, xz, xn), (hr, hz, hn) = wx.chunk(3, -1), uh.chunk(3, -1)
            r, z = sig(xr + hr), sig(xz + hz)
            n = tanh(xn + r * hn)
            h = (1 - z) * n + z * h
        else:
            i, f, g, o = (wx + uh).chunk(4, -1)
            if cell == "lstm_peephole":
                i, f = i + p["peep"][0] * c, f + p["peep"][1] * c
            c = sig(f) * c + sig(i) * tanh(g)
            if cell == "lstm_peephole":
                o = o + p["peep"][2] * c
            m = sig(o) * tanh(layer_norm(c, p["g_c"], p["b_c"]) if cell == "layernorm_lstm" else c)
            h = m @ p["W_r"].T if cell == "lstmp" else m
        outputs.append(h)
    return torch.stack(outputs, 1), h, c


def loop_params(cell: Any) -> dict[str, Tensor]:
    names = {"weight_ih": "W", "weight_hh": "U", "bias": "b", "bias_hh": "c", "weight_peep": "peep", "weight_hr": "W_r"}
    names |= {"ln_ih.weight": "g_ih", "ln_hh.weight": "g_hh", "ln_c.weight": "g_c", "ln_c.bias": "b_c"}
    return {names[k]: v for k, v in cell.named_parameters()}


def torch_params(rnn: TorchRecurrent, cell: str, suffix: str = "_l0") -> dict[str, Tensor]:
    """torch's parameters of one layer and direction in the loop cells' terms."""
    t = dict(rnn.rnn.named_parameters())
    p = {"W": t[f"weight_ih{suffix}"], "U": t[f"weight_hh{suffix}"], "b": t[f"bias_ih{suffix}"]}
    if cell == "gru":  # r multiplies the recurrent bias: it stays apart
        p["c"] = t[f"bias_hh{suffix}"]
    else:
        p["b"] = p["b"] + t[f"bias_hh{suffix}"]
    if cell == "lstmp":
        p["W_r"] = t[f"weight_hr{suffix}"]
    return p


@pytest.mark.parametrize(("cell", "fused"), [(c, False) for c in ALL] + [(c, True) for c in STANDARD])
def test_module_computes_the_documented_equations(cell: str, fused: bool) -> None:
    torch.manual_seed(0)
    # variational with dropout 0 takes the loop path without changing the function
    rnn = make_recurrent(cell, IN, H, **options(cell, variational=not fused)).eval()
    randomize(rnn)
    x, _ = padded_batch([4, 4])
    state = tuple(torch.rand(2, 1, size) - 0.5 for size in rnn.state_sizes)
    out, final = rnn(x, state)
    if fused:
        assert isinstance(rnn, TorchRecurrent)
        p = torch_params(rnn, cell)
    else:
        assert isinstance(rnn, RecurrentStack) and isinstance(rnn.layers[0], LoopLayer)
        p = loop_params(rnn.layers[0].cells[0])
    ref_out, *ref_final = reference(cell, p, x, tuple(s[:, 0] for s in state))
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    for a, b in zip(final, ref_final):
        torch.testing.assert_close(a[:, 0], b, atol=1e-5, rtol=1e-5)


def copy_torch_into_loop(fused: TorchRecurrent, loop: RecurrentStack, cell: str) -> None:
    with torch.no_grad():
        for layer, d in itertools.product(range(loop.num_layers), range(loop.num_directions)):
            target = loop_params(loop.layers[layer].cells[d])  # type: ignore[index]
            source = torch_params(fused, cell, f"_l{layer}" + ("_reverse" if d else ""))
            for key, value in source.items():
                target[key].copy_(value)


@pytest.mark.parametrize("cell", STANDARD)
def test_loop_layer_matches_the_fused_kernel(cell: str) -> None:
    """Same weights, a padded batch, two bidirectional layers: torch.nn.RNN / GRU / LSTM
    (for lstmp: torch.nn.LSTM(proj_size=P)) and the loop layer agree."""
    torch.manual_seed(0)
    fused = make_recurrent(cell, IN, H, 2, True, **options(cell)).eval()
    loop = make_recurrent(cell, IN, H, 2, True, **options(cell, variational=True)).eval()
    assert isinstance(fused, TorchRecurrent) and isinstance(loop, RecurrentStack)
    if cell == "lstmp":
        assert fused.rnn.proj_size == P
    copy_torch_into_loop(fused, loop, cell)
    x, lengths = padded_batch([5, 2, 4])
    state = tuple(torch.rand(3, 4, size) - 0.5 for size in fused.state_sizes)
    for a, b in zip(fused(x, state, lengths), loop(x, state, lengths)):
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            torch.testing.assert_close(u, v, atol=1e-5, rtol=1e-5)


def model_config(cell: str, **extra: Any) -> ModelConfig:
    enc_proj, dec_proj = ({"proj_size": 4}, {"proj_size": 6}) if cell == "lstmp" else ({}, {})
    return ModelConfig(
        encoder=EncoderConfig(cell=cell, embedding_dim=8, hidden_size=6, num_layers=2, **enc_proj, **extra),
        decoder=DecoderConfig(
            cell=cell, embedding_dim=8, hidden_size=10, num_layers=2, output_size=8, **dec_proj, **extra
        ),
    )


@pytest.mark.parametrize("cell", ALL)
def test_gradients_reach_every_parameter_and_stepping_equals_teacher_forcing(cell: str) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(cell, residual=True, dropout_type="variational"), 30, 30)
    src = torch.randint(4, 30, (3, 6))
    lengths = torch.tensor([6, 4, 2])
    tgt = torch.randint(4, 30, (3, 5))
    model.logits(model(src, lengths, tgt)).logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    model.eval()  # a decoder may run its recurrent layer one step at a time, from a given state
    forced = torch.log_softmax(model.logits(model(src, lengths, tgt)), dim=-1)
    encoded = model.encode(src, lengths)
    state = model.init_state(encoded)
    for t in range(tgt.size(1)):
        out = model.step(tgt[:, t], state, encoded)
        torch.testing.assert_close(out.log_probs, forced[:, t], atol=1e-5, rtol=1e-5)
        state = out.state


@pytest.mark.parametrize("cell", ["lstm", "lstm_peephole", "lstmp", "layernorm_lstm"])
def test_forget_gate_bias_and_orthogonal_recurrent_weights(cell: str) -> None:
    for variational in (False, True):
        opts = options(cell, forget_bias=2.0, recurrent_init="orthogonal", variational=variational)
        rnn = make_recurrent(cell, IN, H, 2, True, **opts)
        biases = {k: v for k, v in rnn.named_parameters() if "bias" in k and "ln_" not in k}
        assert biases
        for name, b in biases.items():
            # torch splits the bias in two; its recurrent half is zero at the forget gate
            assert torch.all(b[H : 2 * H] == (0.0 if "bias_hh" in name else 2.0)), name
        for name, u in rnn.named_parameters():
            if "weight_hh" in name:
                for block in u.chunk(4):  # rows orthonormal: (H, S) blocks with H <= S, else columns
                    gram = block @ block.T if block.size(0) <= block.size(1) else block.T @ block
                    torch.testing.assert_close(gram, torch.eye(gram.size(0)), atol=1e-5, rtol=0)


def test_residual_stack_adds_each_layers_input() -> None:
    torch.manual_seed(0)
    rnn = make_recurrent("layernorm_gru", IN, H, 3, True, residual=True).eval()
    assert isinstance(rnn, RecurrentStack)
    x, lengths = padded_batch([4, 3])
    out, _ = rnn(x, lengths=lengths)
    expect, _ = rnn.layers[0](x, None, lengths)
    for layer in rnn.layers[1:]:
        expect = layer(expect, None, lengths)[0] + expect
    torch.testing.assert_close(out, expect)


def test_variational_dropout_keeps_one_mask_per_sequence() -> None:
    torch.manual_seed(0)
    rnn = make_recurrent("gru", IN, H, 2, dropout=0.5, variational=True)
    assert isinstance(rnn, RecurrentStack)
    dropped = rnn._drop(torch.ones(8, 7, 12))
    assert torch.all(dropped == dropped[:, :1]) and 0 < int((dropped == 0).sum()) < dropped.numel()
    x, _ = padded_batch([6, 6])
    rnn.eval()
    quiet = rnn(x)[0]
    rnn.train()
    assert not torch.allclose(rnn(x)[0], quiet)  # masks on the recurrent state and between layers
    layer = rnn.layers[0]
    assert isinstance(layer, LoopLayer) and layer.recurrent_dropout == 0.5


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"cell": "lstmp"}, "model.encoder.proj_size: 0 must be in 1..model.encoder.hidden_size"),
        ({"cell": "lstm", "proj_size": 4}, "model.encoder.proj_size: 4 needs model.encoder.cell: lstmp"),
    ],
)
def test_bad_projection_is_refused(overrides: dict[str, Any], needle: str) -> None:
    with pytest.raises(config_module.ConfigError, match=needle):
        config_module.config_from_dict({"model": {"encoder": overrides}})


@pytest.mark.slow
@pytest.mark.parametrize("cell", ALL)
def test_every_cell_trains_end_to_end(cell: str, tmp_path: Path) -> None:
    """The tiny config with ``cell`` in the encoder and the decoder: the run completes and
    the training loss falls."""
    corpus = write_toy_corpus(tmp_path / "corpus", n_train=120, n_dev=8)
    sets = [f"model.encoder.cell={cell}", f"model.decoder.cell={cell}", "training.max_steps=8", "training.log_every=1"]
    if cell == "lstmp":
        sets += ["model.encoder.proj_size=8", "model.decoder.proj_size=16"]
    run = tmp_path / "run"
    args = ["train", TINY, "--run-dir", str(run), *data_overrides(corpus), *(x for s in sets for x in ("--set", s))]
    assert main(args) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]
    assert (run / "best.pt").exists() and math.isfinite(records[-1]["dev_ppl"])
