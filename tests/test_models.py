"""Model properties: shapes, padding invariance, teacher forcing equals stepping, gradients."""

import itertools

import pytest
import torch

from seq2seq.config import DecoderConfig, EncoderConfig, ModelConfig
from seq2seq.models import build_model
from seq2seq.models.cells import make_recurrent
from seq2seq.models.encoder import Encoder

V = 40


def random_batch(lengths: list[int], vocab: int = V, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        src[i, :n] = torch.randint(4, vocab, (n,), generator=g)
    return src, torch.tensor(lengths)


CASES = list(itertools.product(["rnn", "gru", "lstm"], [False, True], [1, 2]))


@pytest.mark.parametrize(("cell", "bidirectional", "num_layers"), CASES)
def test_encoder_shapes_and_padding_invariance(cell: str, bidirectional: bool, num_layers: int) -> None:
    torch.manual_seed(0)
    enc = Encoder(V, 8, 6, num_layers=num_layers, bidirectional=bidirectional, cell=cell, dropout=0.2).eval()
    src, lengths = random_batch([5, 3, 1])
    out = enc(src, lengths)
    d, k = 2 if bidirectional else 1, 2 if cell == "lstm" else 1
    assert out.outputs.shape == (3, 5, d * 6)
    assert out.summary.shape == (3, k, d * 6)
    assert out.mask.tolist()[1] == [True, True, True, False, False]
    assert torch.all(out.outputs[1, 3:] == 0)
    # Each sentence alone, without padding, gives the same annotations and summary.
    for i, n in enumerate(lengths.tolist()):
        alone = enc(src[i : i + 1, :n], lengths[i : i + 1])
        torch.testing.assert_close(alone.outputs[0], out.outputs[i, :n], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(alone.summary[0], out.summary[i], atol=1e-6, rtol=1e-5)


def model_config(cell: str, layers: int, output_layer: str, bidirectional: bool = True) -> ModelConfig:
    return ModelConfig(
        encoder=EncoderConfig(
            cell=cell, embedding_dim=8, hidden_size=6, num_layers=layers, bidirectional=bidirectional
        ),
        decoder=DecoderConfig(
            cell=cell, embedding_dim=8, hidden_size=10, num_layers=layers, output_layer=output_layer, output_size=8
        ),
    )


@pytest.mark.parametrize(
    ("cell", "layers", "output_layer"), list(itertools.product(["rnn", "gru", "lstm"], [1, 2], ["maxout", "linear"]))
)
def test_teacher_forcing_equals_stepping(cell: str, layers: int, output_layer: str) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(cell, layers, output_layer), V, V + 5).eval()
    src, lengths = random_batch([6, 4, 2])
    tgt, _ = random_batch([5, 5, 5], V + 5, seed=1)
    forced = torch.log_softmax(model.logits(model(src, lengths, tgt)), dim=-1)
    encoded = model.encode(src, lengths)
    state = model.init_state(encoded)
    for t in range(tgt.size(1)):
        out = model.step(tgt[:, t], state, encoded)
        torch.testing.assert_close(out.log_probs, forced[:, t], atol=1e-5, rtol=1e-5)
        state = out.state


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gradients_reach_every_parameter(cell: str) -> None:
    torch.manual_seed(0)
    model = build_model(model_config(cell, 2, "maxout"), V, V)
    src, lengths = random_batch([6, 4, 2])
    tgt, _ = random_batch([5, 3, 4], seed=1)
    model.logits(model(src, lengths, tgt)).logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_lstm_forget_gate_bias_is_one() -> None:
    rnn = make_recurrent("lstm", 4, 3, num_layers=2, bidirectional=True)
    for name, p in rnn.named_parameters():
        if name.startswith("rnn.bias_ih"):
            assert torch.all(p[3:6] == 1.0)
        if name.startswith("rnn.bias_hh"):
            assert torch.all(p[3:6] == 0.0)


def test_tied_embeddings_share_one_parameter() -> None:
    config = ModelConfig(decoder=DecoderConfig(embedding_dim=8, output_size=8, tie_embeddings=True))
    model = build_model(config, V, V)
    assert model.generator.weight is model.decoder.embedding.weight


def test_lstm_decoder_cell_state_comes_from_encoder_cell_state() -> None:
    torch.manual_seed(0)
    model = build_model(model_config("lstm", 1, "maxout"), V, V).eval()
    src, lengths = random_batch([4, 2])
    encoded = model.encode(src, lengths)
    h, c, context = model.init_state(encoded)
    assert h.shape == c.shape == (2, 1, 10)
    torch.testing.assert_close(c, torch.tanh(model.bridge.projections[1](encoded.summary[:, 1])).view(2, 1, 10))
    torch.testing.assert_close(context, encoded.summary[:, 0])


def test_unknown_cell_is_refused() -> None:
    with pytest.raises(ValueError, match="rnn, gru, lstm"):
        make_recurrent("peephole", 4, 4)
