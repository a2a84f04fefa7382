"""Every kernel of seq2seq.kernels equals the plain module it stands in for: the fused
input-feeding GRU decoder with its hand-written backward, the chunked projection +
cross-entropy and the cast-once search step, the CPU-autocast recurrent layers and the
cheaper dropout mask; in float64 with gradients where the kernel runs in float64, and
close to float32 under bf16 autocast."""

import ast
import copy
import dataclasses
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from seq2seq.config import DecoderConfig, EncoderConfig, ModelConfig
from seq2seq.kernels import accelerate
from seq2seq.kernels.decoder import FusedLuongDecoder
from seq2seq.kernels.dropout import FastDropout, fast_dropout_mask
from seq2seq.kernels.input_feeding import Weights, input_feeding_gru
from seq2seq.kernels.loss import FastSeq2Seq, projected_cross_entropy
from seq2seq.kernels.recurrent import CPUAutocastRecurrent, CPUAutocastStack
from seq2seq.models import build_model
from seq2seq.models.attention_decoders import LuongDecoder
from seq2seq.models.cells import TorchRecurrent, make_recurrent
from seq2seq.models.encoder import Encoded
from seq2seq.models.seq2seq import Seq2Seq
from seq2seq.models.stack import RecurrentStack


def _decoder(dropout: float = 0.0) -> LuongDecoder:
    """The plain decoder that the fused kernel supports."""
    torch.manual_seed(0)
    return LuongDecoder(
        30, 8, 12, 10, cell="gru", attention="mlp", attention_size=7, input_feeding=True, output_size=9, dropout=dropout
    )


def _fused(dropout: float = 0.0) -> FusedLuongDecoder:
    fused = accelerate(_decoder(dropout))
    assert isinstance(fused, FusedLuongDecoder)
    return fused


def _run(decoder: LuongDecoder, memory: torch.Tensor, mask: torch.Tensor, h0: torch.Tensor, prev: torch.Tensor):
    encoded = decoder.prepare(Encoded(memory, mask, h0))
    out = decoder(prev, decoder.init_state(encoded, (h0,)), encoded)
    # a loss that weighs every output position and the final state differently
    weights = torch.linspace(-1, 1, out.features.numel(), dtype=out.features.dtype).view_as(out.features)
    loss = (out.features * weights).sum() + 0.3 * out.state[0].sum() + 0.2 * out.state[1].sum()
    grads = torch.autograd.grad(loss, [memory, h0, *decoder.parameters()])
    return out, grads


def test_fused_input_feeding_decoder_equals_the_step_loop_with_gradients() -> None:
    """Same features, attention, final state and gradients (float64), with source padding."""
    plain = _decoder().double()
    fused = accelerate(copy.deepcopy(plain))
    assert type(fused) is FusedLuongDecoder and type(plain) is LuongDecoder
    n, s, t = 3, 5, 4
    memory = torch.randn(n, s, 10, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(n, s, dtype=torch.bool)
    mask[0, 3:] = False
    mask[2, 1:] = False
    h0 = torch.randn(n, 1, 12, dtype=torch.float64, requires_grad=True)
    prev = torch.randint(1, 30, (n, t))
    (out_f, grads_f), (out_p, grads_p) = _run(fused, memory, mask, h0, prev), _run(plain, memory, mask, h0, prev)
    torch.testing.assert_close(out_f.features, out_p.features)
    torch.testing.assert_close(out_f.attention, out_p.attention)
    for a, b in zip(out_f.state, out_p.state, strict=True):
        torch.testing.assert_close(a, b)
    for (name, _), gf, gp in zip(plain.named_parameters(), grads_f[2:], grads_p[2:], strict=True):
        torch.testing.assert_close(gf, gp, msg=name)
    torch.testing.assert_close(grads_f[0], grads_p[0])
    torch.testing.assert_close(grads_f[1], grads_p[1])
    assert out_f.attention is not None and float(out_f.attention[2, :, 1:].abs().max()) == 0.0  # padding


def test_fused_loop_gradcheck_with_a_dropout_mask() -> None:
    torch.manual_seed(1)
    n, s, t, h, o, a, c = 2, 3, 3, 4, 5, 3, 6

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    mask = torch.tensor([[True, True, False], [True, True, True]])
    drop = fast_dropout_mask((n, t, o), 0.4, torch.float64, torch.device("cpu"))

    def run(*args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xe, h0, f0, keys, memory, *params = args
        features, last, _ = input_feeding_gru(xe, h0, f0, keys, memory, mask, Weights(*params), drop)
        return features, last

    inputs = (
        leaf(n, t, 3 * h), leaf(n, h), leaf(n, o), leaf(n, s, a), leaf(n, s, c),
        leaf(3 * h, o), leaf(3 * h, h), leaf(3 * h), leaf(a + o, h), leaf(a), leaf(o, c),
    )  # fmt: skip
    assert torch.autograd.gradcheck(run, inputs)


def test_fused_decoder_under_bf16_autocast_stays_close_and_trains() -> None:
    fused, plain = _fused(), _decoder()
    memory, h0 = torch.randn(4, 6, 10), torch.randn(4, 1, 12)
    mask = torch.ones(4, 6, dtype=torch.bool)
    prev = torch.randint(1, 30, (4, 7))
    with torch.no_grad():
        reference = _run_plain(plain, memory, mask, h0, prev)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        encoded = fused.prepare(Encoded(memory, mask, h0))
        out = fused(prev, fused.init_state(encoded, (h0,)), encoded)
    torch.testing.assert_close(out.features.float(), reference, atol=0.05, rtol=0.05)
    out.features.float().square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in fused.parameters() if p.requires_grad)


def _run_plain(decoder: LuongDecoder, memory, mask, h0, prev) -> torch.Tensor:
    encoded = decoder.prepare(Encoded(memory, mask, h0))
    return decoder(prev, decoder.init_state(encoded, (h0,)), encoded).features


def test_fused_decoder_training_mode_drops_out_and_eval_is_deterministic() -> None:
    decoder = _fused(dropout=0.5)
    memory, h0 = torch.randn(2, 3, 10), torch.randn(2, 1, 12)
    mask = torch.ones(2, 3, dtype=torch.bool)
    prev = torch.randint(1, 30, (2, 5))
    decoder.eval()
    with torch.no_grad():
        first, second = (_run_plain(decoder, memory, mask, h0, prev) for _ in range(2))
    torch.testing.assert_close(first, second)
    decoder.train()
    with torch.no_grad():
        dropped = _run_plain(decoder, memory, mask, h0, prev)
    assert (dropped == 0).any() and not (first == 0).any()


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_projected_cross_entropy_equals_cross_entropy_of_the_projection(label_smoothing: float) -> None:
    torch.manual_seed(0)
    x = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(40, 16, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(40, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 40, (50,))
    reference = F.cross_entropy(F.linear(x, weight, bias), target, label_smoothing=label_smoothing, reduction="sum")
    loss = projected_cross_entropy(x, weight, bias, target, label_smoothing, chunk=16)  # 4 chunks, one short
    torch.testing.assert_close(loss, reference)
    for a, b in zip(
        torch.autograd.grad(0.5 * loss, (x, weight, bias)),
        torch.autograd.grad(0.5 * reference, (x, weight, bias)),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        torch.testing.assert_close(
            projected_cross_entropy(x, weight, bias, target, label_smoothing, chunk=7), reference
        )


def test_projected_cross_entropy_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    x, weight = torch.randn(64, 32, requires_grad=True), torch.randn(100, 32, requires_grad=True)
    target = torch.randint(0, 100, (64,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = projected_cross_entropy(x, weight, None, target, 0.1, chunk=16)
        reference = F.cross_entropy(F.linear(x, weight).float(), target, label_smoothing=0.1, reduction="sum")
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference, rtol=1e-3, atol=1e-2)
    loss.backward()
    assert x.grad is not None and weight.grad is not None and x.grad.dtype == torch.float32


def test_fast_dropout_mask_drops_p_and_keeps_the_mean() -> None:
    torch.manual_seed(0)
    mask = fast_dropout_mask((1000, 999), 0.3, torch.float32, torch.device("cpu"))
    assert abs(float((mask == 0).float().mean()) - 0.3) < 0.003
    assert abs(float(mask.mean()) - 1.0) < 0.01
    zero, kept = mask.unique().tolist()
    assert zero == 0.0 and kept == pytest.approx(1 / 0.7, rel=1e-4)
    layer = accelerate(torch.nn.Dropout(0.3))
    assert isinstance(layer, FastDropout)
    x = torch.randn(5, 7)
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(accelerate(torch.nn.Dropout(0.0)).train()(x), x)
    dropped = layer.train()(x)
    torch.testing.assert_close(dropped[dropped != 0], x[dropped != 0] * kept)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("with_state", [True, False])
def test_gru_loop_equals_torch_gru_with_gradients(bidirectional: bool, with_state: bool) -> None:
    """The CPU-autocast GRU path (seq2seq.kernels.gru_loop) against torch.nn.GRU: two layers, a
    padded batch, float64 outputs, final states and gradients."""
    torch.manual_seed(0)
    plain = make_recurrent("gru", 5, 6, 2, bidirectional).double()
    assert type(plain) is TorchRecurrent
    rnn = accelerate(copy.deepcopy(plain))
    assert isinstance(rnn, CPUAutocastRecurrent)
    d = 2 if bidirectional else 1
    x = torch.randn(4, 7, 5, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([7, 3, 5, 1])
    state = (torch.randn(4, 2 * d, 6, dtype=torch.float64, requires_grad=True),) if with_state else None
    results = []
    for module, run in ((plain, plain.forward), (rnn, rnn.gru_forward)):
        out, final = run(x, state, lengths)
        weights = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)
        loss = (out * weights).sum() + 0.7 * final[0].square().sum()
        inputs = [x, *module.parameters(), *(state or ())]
        results.append((out, final[0], torch.autograd.grad(loss, inputs)))
    (out_t, final_t, grads_t), (out_l, final_l, grads_l) = results
    torch.testing.assert_close(out_l, out_t)
    torch.testing.assert_close(final_l, final_t)
    assert float(out_l[3, 1:].abs().max()) == 0.0  # padding
    for a, b in zip(grads_l, grads_t, strict=True):
        torch.testing.assert_close(a, b)


def test_gru_under_cpu_autocast_runs_the_loop_in_bf16_and_stays_close() -> None:
    torch.manual_seed(0)
    rnn = accelerate(make_recurrent("gru", 8, 16, 1, True))
    x, lengths = torch.randn(3, 6, 8), torch.tensor([6, 2, 4])
    reference, _ = rnn(x, lengths=lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = rnn(x, lengths=lengths)
    torch.testing.assert_close(out.float(), reference, atol=0.03, rtol=0.03)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in rnn.parameters())


def test_decoding_reuses_cast_weights_until_a_parameter_changes() -> None:
    """Search calls the fused decoder once per step under no_grad: the bf16 weights are cast
    once per batch and reused, and an in-place change of a parameter renews them."""
    decoder = _fused().eval()
    memory, h0 = torch.randn(2, 3, 10), torch.randn(2, 1, 12)
    mask = torch.ones(2, 3, dtype=torch.bool)
    prev = torch.randint(1, 30, (2, 1))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        encoded = decoder.prepare(Encoded(memory, mask, h0))  # once per batch, as in search
        state = decoder.init_state(encoded, (h0,))
        first = decoder(prev, state, encoded).features
        cached = decoder._cast_cache._value
        again = decoder(prev, state, encoded).features
        assert decoder._cast_cache._value is cached
        decoder.combine.weight.mul_(2.0)
        changed = decoder(prev, state, encoded).features
        assert decoder._cast_cache._value is not cached
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, changed)
    with torch.no_grad():
        reference = _run_plain(decoder, memory, mask, h0, prev)  # float32, after the change
    torch.testing.assert_close(changed.float(), reference, atol=0.05, rtol=0.05)


def test_search_step_under_bf16_uses_cast_output_weights_with_the_same_result() -> None:
    """Seq2Seq.step under no_grad and autocast casts the output projection once (CastCache)
    and gives what autocast's own per-call cast gives; an update renews the cast."""
    torch.manual_seed(0)
    config = ModelConfig(
        encoder=EncoderConfig(embedding_dim=8, hidden_size=8),
        decoder=DecoderConfig(embedding_dim=8, hidden_size=12, output_size=8),
    )
    model = accelerate(build_model(config, 30, 30).eval())
    assert isinstance(model, FastSeq2Seq)
    src, lengths = torch.randint(4, 30, (3, 5)), torch.tensor([5, 5, 5])
    prev = torch.tensor([2, 2, 2])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        encoded = model.encode(src, lengths)
        state = model.init_state(encoded)
        features = model.decoder.step(prev, state, encoded).features
        expected = torch.log_softmax(model.logits(features).float(), dim=-1)
        out = model.step(prev, state, encoded)
        cached = model._cast_cache._value
        torch.testing.assert_close(out.log_probs, expected, atol=0, rtol=0)
        model.generator.bias.add_(1.0)  # in place, like an optimizer step
        model.step(prev, state, encoded)
        assert model._cast_cache._value is not cached


def test_a_new_search_recasts_weights_changed_without_a_version_bump() -> None:
    """torch's fused Adam updates parameters without moving their version counters; the
    casts made for one search must not serve the next (encode drops them)."""
    torch.manual_seed(0)
    config = ModelConfig(
        encoder=EncoderConfig(embedding_dim=8, hidden_size=8),
        decoder=DecoderConfig(
            type="luong", embedding_dim=8, hidden_size=12, output_size=8, attention="mlp", input_feeding=True
        ),
    )
    model = accelerate(build_model(config, 30, 30))
    assert isinstance(model, FastSeq2Seq) and isinstance(model.decoder, FusedLuongDecoder)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)
    src, lengths, prev = torch.randint(4, 30, (3, 5)), torch.tensor([5, 4, 3]), torch.tensor([2, 2, 2])

    def search_step() -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            encoded = model.encode(src, lengths)
            return model.step(prev, model.init_state(encoded), encoded).log_probs

    model.eval()
    before = search_step()
    model.train()
    model(src, lengths, torch.randint(4, 30, (3, 4))).sum().backward()
    versions = [p._version for p in model.parameters()]
    optimizer.step()
    assert [p._version for p in model.parameters()] == versions  # what makes a version key unsafe
    model.eval()
    after = search_step()
    model._cast_cache.clear()
    model.decoder._cast_cache.clear()
    torch.testing.assert_close(after, search_step(), atol=0, rtol=0)
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_frozen_model_searches_as_the_plain_one_with_weights_made_once(precision: str) -> None:
    """accelerate(frozen=True): the casts (and oneDNN's packed weights, where it packs) are
    made at the first search and serve every later one, and the steps give the plain
    model's log-probabilities (to the products' rounding)."""
    torch.manual_seed(0)
    config = ModelConfig(
        encoder=EncoderConfig(embedding_dim=8, hidden_size=8),
        decoder=DecoderConfig(
            type="luong", embedding_dim=8, hidden_size=12, output_size=8, attention="mlp", input_feeding=True
        ),
    )
    plain = build_model(config, 30, 30).eval()
    frozen = accelerate(copy.deepcopy(plain), frozen=True)
    assert isinstance(frozen, FastSeq2Seq) and isinstance(frozen.decoder, FusedLuongDecoder)
    src, lengths, prev = torch.randint(4, 30, (3, 5)), torch.tensor([5, 4, 3]), torch.tensor([2, 7, 9])

    def steps(model: Seq2Seq) -> list[torch.Tensor]:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            encoded = model.encode(src, lengths)
            out = model.step(prev, model.init_state(encoded), encoded)
            return [out.log_probs, model.step(prev, out.state, encoded).log_probs]

    first = steps(frozen)
    made = frozen._cast_cache._value, frozen.decoder._cast_cache._value
    tolerance = {"atol": 1e-5, "rtol": 1e-5} if precision == "fp32" else {"atol": 0.05, "rtol": 0.05}
    for got, want in zip(steps(frozen), steps(plain), strict=True):
        torch.testing.assert_close(got.float(), want.float(), **tolerance)
    assert frozen._cast_cache._value is made[0] and frozen.decoder._cast_cache._value is made[1]
    for got, again in zip(first, steps(frozen), strict=True):
        torch.testing.assert_close(got, again, atol=0, rtol=0)


# The dispatcher: kernels exactly where they claim support, the plain path elsewhere.

DECODERS = {
    "fused": DecoderConfig(type="luong", attention="mlp", input_feeding=True),
    "luong-general": DecoderConfig(type="luong", attention="general", input_feeding=True),
    "luong-no-feeding": DecoderConfig(type="luong", attention="mlp", input_feeding=False),
    "luong-2-layers": DecoderConfig(type="luong", attention="mlp", num_layers=2),
    "luong-lstm": DecoderConfig(type="luong", attention="mlp", cell="lstm"),
    "luong-residual": DecoderConfig(type="luong", attention="mlp", num_layers=2, residual=True),
    "luong-variational": DecoderConfig(type="luong", attention="mlp", dropout_type="variational"),
    "bahdanau": DecoderConfig(type="bahdanau", cell="lstm_peephole"),
    "context": DecoderConfig(type="context"),
}


def _small(decoder: DecoderConfig) -> ModelConfig:
    dec = dataclasses.replace(decoder, embedding_dim=6, hidden_size=8, output_size=7, attention_size=5)
    return ModelConfig(encoder=EncoderConfig(embedding_dim=6, hidden_size=4, cell="gru"), decoder=dec)


@pytest.mark.parametrize("name", DECODERS)
def test_accelerate_chooses_each_kernel_exactly_where_it_claims_support(name: str) -> None:
    dec = DECODERS[name]
    plain = build_model(_small(dec), 20, 20)
    before = {key: value.clone() for key, value in plain.state_dict().items()}
    model = accelerate(copy.deepcopy(plain))
    expected = {
        Seq2Seq: FastSeq2Seq,
        LuongDecoder: FusedLuongDecoder if name == "fused" else LuongDecoder,
        TorchRecurrent: CPUAutocastRecurrent,
        RecurrentStack: CPUAutocastStack,
        torch.nn.Dropout: FastDropout,
    }
    for (path, old), (_, new) in zip(plain.named_modules(), model.named_modules(), strict=True):
        assert type(new) is expected.get(type(old), type(old)), path
        if type(new) is not type(old):
            assert isinstance(new, type(old))  # a kernel is a subclass of what it stands in for
    assert name != "fused" or isinstance(model.decoder, FusedLuongDecoder)
    assert name == "fused" or not isinstance(model.decoder, FusedLuongDecoder)
    # Same parameters under the same names: checkpoints do not see the kernels.
    assert list(model.state_dict()) == list(before)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_compile_is_refused_where_no_kernel_has_a_step_loop() -> None:
    with pytest.raises(ValueError, match="no fused decoder"):
        accelerate(build_model(_small(DECODERS["bahdanau"]), 20, 20), "default")
    with pytest.raises(ValueError, match="compile mode 'fast'"):
        accelerate(build_model(_small(DECODERS["fused"]), 20, 20), "fast")


@pytest.mark.parametrize("name", DECODERS)
def test_an_accelerated_model_equals_the_plain_model_in_float64(name: str) -> None:
    """Teacher-forced loss with its gradients and a search step (full vocabulary and a
    shortlist), the plain model against the accelerated one, with source padding."""
    torch.manual_seed(0)
    plain = build_model(_small(DECODERS[name]), 20, 20).double().eval()
    fast = accelerate(copy.deepcopy(plain))
    src = torch.randint(4, 20, (3, 6))
    lengths = torch.tensor([6, 2, 4])
    tgt_in, tgt_out = torch.randint(4, 20, (3, 5)), torch.randint(4, 20, (3, 5))
    results = []
    for model in (plain, fast):
        features = model(src, lengths, tgt_in)
        loss = model.cross_entropy(features.reshape(-1, features.size(-1)), tgt_out.reshape(-1), 0.1)
        grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
        with torch.no_grad():
            encoded = model.encode(src, lengths)
            state = model.init_state(encoded)
            full = model.step(tgt_in[:, 0], state, encoded).log_probs
            short = model.step(tgt_in[:, 0], state, encoded, vocab=torch.tensor([3, 7, 9, 12])).log_probs
        results.append((loss, grads, full, short))
    (loss_p, grads_p, full_p, short_p), (loss_f, grads_f, full_f, short_f) = results
    torch.testing.assert_close(loss_f, loss_p)
    for (param, _), a, b in zip(plain.named_parameters(), grads_f, grads_p, strict=True):
        assert (a is None) == (b is None), param
        if a is not None and b is not None:
            torch.testing.assert_close(a, b, msg=param)
    torch.testing.assert_close(full_f, full_p)
    torch.testing.assert_close(short_f, short_p)


@pytest.mark.parametrize("cell", ["lstm", "rnn", "lstm_peephole", "layernorm_gru"])
def test_non_gru_layers_under_cpu_autocast_run_the_plain_float32_equations(cell: str) -> None:
    """Under CPU autocast every recurrent layer but the GRU runs in float32 with autocast
    off: its output is the plain float32 output, exactly."""
    torch.manual_seed(0)
    plain = make_recurrent(cell, 5, 6, 2, True)
    fast = accelerate(copy.deepcopy(plain))
    assert type(fast) is not type(plain)
    x, lengths = torch.randn(3, 7, 5), torch.tensor([7, 3, 5])
    reference, (final, *_) = plain(x, lengths=lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (fast_final, *_) = fast(x, lengths=lengths)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference, atol=0, rtol=0)
    torch.testing.assert_close(fast_final, final, atol=0, rtol=0)


# The plain model is plain PyTorch: each file of seq2seq/models reads as its paper's equations.

MODELS = Path(__file__).resolve().parents[1] / "seq2seq" / "models"
CASTS = {"float", "half", "bfloat16", "double", "type"}  # tensor methods that change the dtype
FORBIDDEN_NAMES = {
    "autocast",
    "is_autocast_enabled",
    "get_autocast_dtype",
    "mkldnn",
    "_linear_pointwise",
    "Function",  # torch.autograd.Function: a hand-written backward
    "once_differentiable",
    "CastCache",
    "compile",
}


def _device_only(call: ast.Call) -> bool:
    """``x.to(y.device)`` or ``x.to(device)``: a move, not a cast."""
    if call.keywords or len(call.args) != 1:
        return False
    arg = call.args[0]
    return (isinstance(arg, ast.Attribute) and arg.attr == "device") or (
        isinstance(arg, ast.Name) and arg.id == "device"
    )


def test_models_hold_no_cast_autocast_onednn_custom_backward_or_weight_cache() -> None:
    violations = []
    for path in sorted(MODELS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                method = node.func.attr
                if method in CASTS or (method == "to" and not _device_only(node)):
                    violations.append(f"{where}: .{method}(...)")
            if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_NAMES:
                violations.append(f"{where}: .{node.attr}")
            if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
                violations.append(f"{where}: {node.id}")
            if isinstance(node, ast.ImportFrom) and node.module and "seq2seq.kernels" in node.module:
                violations.append(f"{where}: imports {node.module}")
    assert not violations, "\n".join(violations)


def test_the_source_check_catches_what_it_forbids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cast, an autocast and a custom autograd Function in a models file are each found."""
    for line in ("y = x.float()", "y = x.to(torch.bfloat16)", "torch.autocast('cpu')", "torch.autograd.Function"):
        (tmp_path / "bad.py").write_text(line + "\n")
        monkeypatch.setattr(sys.modules[__name__], "MODELS", tmp_path)
        with pytest.raises(AssertionError):
            test_models_hold_no_cast_autocast_onednn_custom_backward_or_weight_cache()
    (tmp_path / "bad.py").write_text("lengths = lengths.to(x.device)\n")
    test_models_hold_no_cast_autocast_onednn_custom_backward_or_weight_cache()
