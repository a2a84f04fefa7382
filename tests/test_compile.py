"""The decoder's step loop under torch.compile (training.compile, search.compile) computes what
the eager loop computes, forward, backward and in search, across batch and source sizes; and
the switch is refused where there is no step loop to compile."""

import dataclasses

import pytest
import torch

from seq2seq.config import DecoderConfig, EncoderConfig, ModelConfig, RunConfig
from seq2seq.errors import ConfigError
from seq2seq.kernels import accelerate
from seq2seq.kernels.decoder import FusedLuongDecoder
from seq2seq.kernels.input_feeding import EAGER, Weights, compiled_steps, input_feeding_gru
from seq2seq.models import build_model
from seq2seq.models.attention_decoders import LuongDecoder
from seq2seq.models.encoder import Encoded
from seq2seq.search import beam_search, greedy_search


def _decoder() -> FusedLuongDecoder:
    torch.manual_seed(0)
    plain = LuongDecoder(
        30, 8, 12, 10, cell="gru", attention="mlp", attention_size=7, input_feeding=True, output_size=9, dropout=0.3
    )
    return accelerate(plain)


def _loss_and_grads(decoder: FusedLuongDecoder, n: int, s: int, t: int, seed: int):
    """Features, attention, and the gradients of a loss over every output and the final state
    for one random batch (padding in the sources, the training-mode dropout mask seeded)."""
    gen = torch.Generator().manual_seed(seed)
    memory = torch.randn(n, s, 10, generator=gen, requires_grad=True)
    mask = torch.ones(n, s, dtype=torch.bool)
    mask[0, s // 2 :] = False
    h0 = torch.randn(n, 1, 12, generator=gen, requires_grad=True)
    prev = torch.randint(1, 30, (n, t), generator=gen)
    torch.manual_seed(seed)  # the dropout mask
    encoded = decoder.prepare(Encoded(memory, mask, h0))
    out = decoder(prev, decoder.init_state(encoded, (h0,)), encoded)
    weights = torch.linspace(-1, 1, out.features.numel()).view_as(out.features)
    loss = (out.features * weights).sum() + 0.3 * out.state[0].sum()
    grads = torch.autograd.grad(loss, [memory, h0, *decoder.parameters()])
    return out.features, out.attention, grads


@pytest.mark.slow  # torch.compile takes a while
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_step_loop_equals_the_eager_one_with_gradients(mode: str) -> None:
    """float32, training mode (dropout), two batches of other sizes: the second reuses the
    code compiled for the first (dynamic shapes) and both equal the eager loop. On the CPU,
    reduce-overhead runs without CUDA graphs, through the same loop (marking each step)."""
    decoder = _decoder().train()
    assert isinstance(decoder, FusedLuongDecoder)
    for n, s, t, seed in ((3, 5, 4, 0), (5, 7, 6, 1)):
        accelerate(decoder, "none")
        eager = _loss_and_grads(decoder, n, s, t, seed)
        accelerate(decoder, mode)
        compiled = _loss_and_grads(decoder, n, s, t, seed)
        torch.testing.assert_close(compiled[0], eager[0])
        torch.testing.assert_close(compiled[1], eager[1])
        names = ["memory", "h0", *(name for name, _ in decoder.named_parameters())]
        for name, gc, ge in zip(names, compiled[2], eager[2], strict=True):
            torch.testing.assert_close(gc, ge, msg=name)
    assert decoder.steps is compiled_steps(mode) and compiled_steps(mode).compiled


@pytest.mark.slow  # torch.compile takes a while
def test_compiled_steps_under_bf16_autocast_stay_as_close_to_float32_as_eager() -> None:
    """Compiled bf16 fuses the elementwise work in float32 (fewer roundings than eager bf16):
    its distance from the float32 loop is at most a little above the eager bf16 loop's."""
    torch.manual_seed(1)
    n, s, t, h = 4, 6, 5, 16
    args = [torch.randn(n, t, 3 * h) * 0.5, torch.randn(n, h), torch.randn(n, h), torch.randn(n, s, h)]
    memory, mask = torch.randn(n, s, h), torch.ones(n, s, dtype=torch.bool)
    weights = Weights(
        *(torch.randn(*shape) * 0.3 for shape in [(3 * h, h), (3 * h, h), (3 * h,), (2 * h, h), (h,), (h, h)])
    )
    reference = input_feeding_gru(*args, memory, mask, weights)[0]
    errors = {}
    for name, steps in (("eager", EAGER), ("compiled", compiled_steps("default"))):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = input_feeding_gru(*args, memory, mask, weights, steps=steps)[0]
        errors[name] = float((features - reference).abs().max())
    assert errors["compiled"] <= 1.5 * errors["eager"] + 1e-3, errors


@pytest.mark.slow  # torch.compile takes a while
def test_compiled_search_gives_the_eager_translations() -> None:
    """Greedy and beam search (finished sentences leave the batch: the batch size changes from
    step to step) with the compiled step give the eager hypotheses and scores."""
    config = ModelConfig(
        encoder=EncoderConfig(embedding_dim=8, hidden_size=6, bidirectional=True),
        decoder=DecoderConfig(type="luong", embedding_dim=8, hidden_size=12, attention_size=7, output_size=9),
        bridge="last",
    )
    torch.manual_seed(0)
    model = accelerate(build_model(config, 20, 25, 0).eval())
    src = torch.randint(4, 20, (6, 7))
    lengths = torch.tensor([7, 6, 5, 4, 3, 2])
    for i, length in enumerate(lengths.tolist()):
        src[i, length:] = 0
    common = {"bos": 1, "eos": 2, "max_length_a": 1.0, "max_length_b": 3}
    results = []
    for mode in ("none", "default"):
        accelerate(model, mode)
        with torch.no_grad():
            greedy = greedy_search(model, src, lengths, **common)
            beam = beam_search(model, src, lengths, beam_size=3, n_best=2, **common)
        results.append((greedy, beam))
    (greedy_e, beam_e), (greedy_c, beam_c) = results
    assert [h.tokens for h in greedy_c] == [h.tokens for h in greedy_e]
    for hyps_c, hyps_e in zip(beam_c, beam_e, strict=True):
        assert [h.tokens for h in hyps_c] == [h.tokens for h in hyps_e]
        torch.testing.assert_close([h.score for h in hyps_c], [h.score for h in hyps_e])


def test_compile_is_refused_without_the_fused_decoder() -> None:
    with pytest.raises(ConfigError, match=r"training\.compile: default .*luong"):
        RunConfig(training=dataclasses.replace(RunConfig().training, compile="default"))
    model = dataclasses.replace(RunConfig().model, decoder=DecoderConfig(type="luong", attention="general"))
    with pytest.raises(ConfigError, match=r"search\.compile"):
        RunConfig(model=model, search=dataclasses.replace(RunConfig().search, compile="reduce-overhead"))
    with pytest.raises(ConfigError, match=r"training\.compile: default needs training\.kernels: true"):
        RunConfig(model=model, training=dataclasses.replace(RunConfig().training, kernels=False, compile="default"))
    with pytest.raises(ValueError, match="no fused decoder"):
        accelerate(build_model(RunConfig().model, 20, 20, 0), "default")
    with pytest.raises(ValueError, match="expected one of"):
        compiled_steps("max-autotune")


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"attention": "general"},
        {"input_feeding": False},
        {"cell": "lstm"},
        {"num_layers": 2},
        {"residual": True, "num_layers": 2},
        {"dropout_type": "variational"},
    ],
)
def test_the_config_check_agrees_with_the_kernel_on_what_is_fused(changes: dict[str, object]) -> None:
    """The rule has one home (config.fused_decoder); this checks the wiring: the settings a
    decoder keeps are the ones its config gave it."""
    decoder = DecoderConfig(type="luong", hidden_size=12, **changes)  # type: ignore[arg-type]
    config = ModelConfig(encoder=EncoderConfig(hidden_size=6, bidirectional=True), decoder=decoder, bridge="tanh")
    model = dataclasses.replace(RunConfig().model, encoder=config.encoder, decoder=decoder, bridge="tanh")
    built = accelerate(build_model(config, 20, 20, 0)).decoder
    assert isinstance(built, LuongDecoder)
    accepted = True
    try:
        RunConfig(model=model, training=dataclasses.replace(RunConfig().training, compile="default"))
    except ConfigError:
        accepted = False
    assert accepted == isinstance(built, FusedLuongDecoder) == (changes == {})
