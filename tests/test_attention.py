"""Attention decoders and bridges: masked weights, forward equals stepping, padding and batch
invariance of search, bridge semantics."""

import itertools

import pytest
import torch

from seq2seq.config import DecoderConfig, EncoderConfig, ModelConfig
from seq2seq.ensemble import Ensemble
from seq2seq.models import build_model
from seq2seq.models.attention import ATTENTIONS, make_attention
from seq2seq.models.bridges import BRIDGES
from seq2seq.models.encoder import Encoder
from seq2seq.search import beam_search, greedy_search

V, BOS, EOS, PAD = 30, 2, 3, 0

# (decoder type, attention, input feeding, cell)
VARIANTS = [
    ("bahdanau", "mlp", True, "gru"),
    ("bahdanau", "general", True, "lstm"),
    *[("luong", a, f, "gru") for a, f in itertools.product(["dot", "general", "mlp"], [False, True])],
    ("luong", "general", True, "lstm"),
    ("luong", "mlp", False, "lstm"),
]


def make_model(kind: str, attention: str, feeding: bool, cell: str, bridge: str = "tanh", layers: int = 1):
    torch.manual_seed(5)
    config = ModelConfig(
        encoder=EncoderConfig(cell=cell, embedding_dim=8, hidden_size=6, num_layers=layers),
        decoder=DecoderConfig(
            type=kind,
            cell=cell,
            embedding_dim=8,
            hidden_size=12,
            num_layers=layers,
            attention=attention,
            input_feeding=feeding,
            output_size=8,
        ),
        bridge=bridge,
    )
    model = build_model(config, V, V).eval()
    with torch.no_grad():  # make EOS likely enough that hypotheses end at different lengths
        model.generator.bias[EOS] += 0.5
    return model


def sources(n: int, seed: int = 0, longest: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, longest, (n,), generator=g)
    lengths[0] = longest - 1  # the batch has padding in every other row
    src = torch.full((n, int(lengths.max())), PAD)
    for i, length in enumerate(lengths.tolist()):
        src[i, :length] = torch.randint(4, V, (length,), generator=g)
        src[i, length - 1] = EOS
    return src, lengths


def targets(n: int, length: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    tgt = torch.randint(4, V, (n, length), generator=g)
    tgt[:, 0] = BOS
    return tgt


@pytest.mark.parametrize("kind", list(ATTENTIONS))
def test_attention_weights_sum_to_one_and_ignore_padding(kind: str) -> None:
    torch.manual_seed(0)
    attention = make_attention(kind, 6, 6, 5)
    memory = torch.randn(3, 7, 6)
    mask = torch.arange(7)[None, :] < torch.tensor([7, 4, 1])[:, None]
    query = torch.randn(3, 2, 6)
    context, weights = attention(query, attention.keys(memory), memory, mask)
    assert context.shape == (3, 2, 6) and weights.shape == (3, 2, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2))
    assert torch.all(weights.masked_select(~mask[:, None, :].expand_as(weights)) == 0)
    # The context is what the weights say, and padding rows of memory do not matter.
    torch.testing.assert_close(context, torch.bmm(weights, memory))
    noisy = memory.masked_fill(~mask[:, :, None], 1e3)
    noisy_context, noisy_weights = attention(query, attention.keys(noisy), noisy, mask)
    torch.testing.assert_close(noisy_weights, weights)
    torch.testing.assert_close(noisy_context, context)


def test_dot_attention_needs_equal_sizes() -> None:
    with pytest.raises(ValueError, match="general"):
        make_attention("dot", 6, 8, 0)


@pytest.mark.parametrize(("kind", "attention", "feeding", "cell"), VARIANTS)
def test_teacher_forcing_equals_stepping(kind: str, attention: str, feeding: bool, cell: str) -> None:
    model = make_model(kind, attention, feeding, cell)
    src, lengths = sources(4)
    tgt = targets(4, 6)
    with torch.no_grad():
        forced = model.teacher_forced(src, lengths, tgt)
        encoded = model.encode(src, lengths)
        state = model.init_state(encoded)
        steps, weights = [], []
        for t in range(tgt.size(1)):
            out = model.decoder.step(tgt[:, t], state, encoded)
            steps.append(out.features)
            weights.append(out.attention)
            state = out.state
    torch.testing.assert_close(forced.features, torch.stack(steps, dim=1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(forced.attention, torch.stack(weights, dim=1), atol=1e-5, rtol=1e-5)
    for a, b in zip(forced.state, state):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # Weights: a distribution over the real source positions of each sentence.
    mask = torch.arange(src.size(1))[None, :] < lengths[:, None]
    torch.testing.assert_close(forced.attention.sum(-1), torch.ones(4, 6))
    assert torch.all(forced.attention.masked_select(~mask[:, None, :].expand_as(forced.attention)) == 0)


@pytest.mark.parametrize(("kind", "attention", "feeding", "cell"), VARIANTS[:4])
def test_padding_changes_nothing(kind: str, attention: str, feeding: bool, cell: str) -> None:
    model = make_model(kind, attention, feeding, cell, layers=2)
    src, lengths = sources(5, seed=2)
    tgt = targets(5, 5)
    with torch.no_grad():
        batched = model.teacher_forced(src, lengths, tgt)
        for i in range(5):
            n = int(lengths[i])
            alone = model.teacher_forced(src[i : i + 1, :n], lengths[i : i + 1], tgt[i : i + 1])
            torch.testing.assert_close(alone.features[0], batched.features[i], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(alone.attention[0], batched.attention[i, :, :n], atol=1e-5, rtol=1e-5)


KW = {"bos": BOS, "eos": EOS, "max_length_a": 1.0, "max_length_b": 4}


@pytest.mark.parametrize(("kind", "attention", "feeding", "cell"), [VARIANTS[0], VARIANTS[5], VARIANTS[6]])
def test_beam_one_equals_greedy_with_attention(kind: str, attention: str, feeding: bool, cell: str) -> None:
    model = make_model(kind, attention, feeding, cell)
    src, lengths = sources(16)
    greedy = greedy_search(model, src, lengths, **KW)
    beam = beam_search(model, src, lengths, beam_size=1, length_penalty_kind="none", **KW)
    assert [h.tokens for h in greedy] == [b[0].tokens for b in beam]
    for i, (g, b) in enumerate(zip(greedy, beam)):
        assert g.log_prob == pytest.approx(b[0].log_prob, abs=1e-4)
        assert g.attention is not None and b[0].attention is not None
        torch.testing.assert_close(g.attention, b[0].attention, atol=1e-5, rtol=1e-5)
        assert g.attention.shape == (len(g.tokens) + 1, int(lengths[i]))
    assert len({len(h.tokens) for h in greedy}) > 1


@pytest.mark.parametrize(("kind", "attention", "feeding", "cell"), [VARIANTS[0], VARIANTS[5]])
def test_beam_results_do_not_depend_on_batch_size(kind: str, attention: str, feeding: bool, cell: str) -> None:
    model = make_model(kind, attention, feeding, cell)
    src, lengths = sources(64, seed=3)
    batched = beam_search(model, src, lengths, beam_size=5, n_best=2, **KW)
    for i in range(64):
        n = int(lengths[i])
        alone = beam_search(model, src[i : i + 1, :n], lengths[i : i + 1], beam_size=5, n_best=2, **KW)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in batched[i]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in batched[i]], abs=1e-4)
        for a, b in zip(alone, batched[i]):
            assert a.attention is not None and b.attention is not None
            torch.testing.assert_close(a.attention, b.attention, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("enc_cell", "dec_layers"), [("gru", 1), ("lstm", 2)])
@pytest.mark.parametrize("bridge", list(BRIDGES))
def test_bridges_give_every_layer_a_state(bridge: str, enc_cell: str, dec_layers: int) -> None:
    torch.manual_seed(0)
    encoder = Encoder(V, 8, 6, cell=enc_cell, bidirectional=True).eval()
    src, lengths = sources(3)
    encoded = encoder(src, lengths)
    states = BRIDGES[bridge](12, 12, dec_layers, 2)(encoded)  # an LSTM decoder: h and c
    assert len(states) == 2 and all(s.shape == (3, dec_layers, 12) for s in states)
    if bridge == "last":  # the encoder's own final states, in every layer
        for layer in range(dec_layers):
            torch.testing.assert_close(states[0][:, layer], encoded.summary[:, 0])
        expected_c = encoded.summary[:, 1] if enc_cell == "lstm" else torch.zeros(3, 12)
        torch.testing.assert_close(states[1][:, 0], expected_c)
    if bridge == "mean":  # padding does not enter the mean
        garbage = encoded._replace(outputs=encoded.outputs.masked_fill(~encoded.mask[:, :, None], 7.0))
        bridge_module = BRIDGES[bridge](12, 12, dec_layers, 2)
        for a, b in zip(bridge_module(encoded), bridge_module(garbage)):
            torch.testing.assert_close(a, b)


def test_last_bridge_needs_equal_sizes() -> None:
    with pytest.raises(ValueError, match="hidden_size"):
        BRIDGES["last"](12, 16, 1, 1)


def test_ensemble_of_one_model_twice_equals_the_model() -> None:
    model = make_model("luong", "general", True, "gru")
    src, lengths = sources(8)
    single = beam_search(model, src, lengths, beam_size=3, n_best=3, **KW)
    double = beam_search(Ensemble([model, model]), src, lengths, beam_size=3, n_best=3, **KW)
    for a, b in zip(single, double):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-4)


def test_ensemble_mixes_distributions_and_keeps_batch_invariance() -> None:
    models = [make_model("luong", "general", True, "gru"), make_model("bahdanau", "mlp", True, "lstm")]
    ensemble = Ensemble(models)
    src, lengths = sources(6)
    prev = torch.full((6,), BOS)
    encoded = ensemble.encode(src, lengths)
    out = ensemble.step(prev, ensemble.init_state(encoded), encoded)
    probs = torch.stack([m.step(prev, m.init_state(e), e).log_probs.exp() for m, e in zip(models, encoded)])
    torch.testing.assert_close(out.log_probs.exp(), probs.mean(0))
    batched = beam_search(ensemble, src, lengths, beam_size=3, **KW)
    for i in range(6):
        n = int(lengths[i])
        alone = beam_search(ensemble, src[i : i + 1, :n], lengths[i : i + 1], beam_size=3, **KW)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in batched[i]]


@pytest.mark.parametrize(("kind", "dec_cell", "proj_size"), [("bahdanau", "lstmp", 5), ("luong", "layernorm_lstm", 0)])
def test_attention_decoders_with_custom_cells(kind: str, dec_cell: str, proj_size: int) -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        encoder=EncoderConfig(cell="layernorm_gru", embedding_dim=8, hidden_size=6),
        decoder=DecoderConfig(
            type=kind, cell=dec_cell, embedding_dim=8, hidden_size=12, proj_size=proj_size, output_size=8
        ),
        bridge="mean",
    )
    model = build_model(config, V, V).eval()
    src, lengths = sources(4)
    tgt = targets(4, 5)
    with torch.no_grad():
        forced = model.teacher_forced(src, lengths, tgt)
        encoded = model.encode(src, lengths)
        state = model.init_state(encoded)
        steps = []
        for t in range(tgt.size(1)):
            out = model.decoder.step(tgt[:, t], state, encoded)
            steps.append(out.features)
            state = out.state
    torch.testing.assert_close(forced.features, torch.stack(steps, dim=1), atol=1e-5, rtol=1e-5)
    assert greedy_search(model, src, lengths, **KW)[0].attention is not None
