"""Search parities: beam 1 equals greedy, batches equal single sentences, limits hold."""

import pytest
import torch

from seq2seq.config import DecoderConfig, EncoderConfig, ModelConfig
from seq2seq.models import build_model
from seq2seq.search import beam_search, forced_log_probs, greedy_search, length_penalty, select

V, BOS, EOS, PAD = 30, 2, 3, 0


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(3)
    config = ModelConfig(
        encoder=EncoderConfig(embedding_dim=8, hidden_size=8),
        decoder=DecoderConfig(embedding_dim=8, hidden_size=12, output_size=8),
    )
    m = build_model(config, V, V).eval()
    with torch.no_grad():  # make EOS likely enough that hypotheses end at different lengths
        m.generator.bias[EOS] += 0.5
    return m


def sources(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 9, (n,), generator=g)
    src = torch.full((n, int(lengths.max())), PAD)
    for i, length in enumerate(lengths.tolist()):
        src[i, :length] = torch.randint(4, V, (length,), generator=g)
        src[i, length - 1] = EOS
    return src, lengths


KW = {"bos": BOS, "eos": EOS, "max_length_a": 1.0, "max_length_b": 4}


def test_beam_one_equals_greedy(model: torch.nn.Module) -> None:
    src, lengths = sources(16)
    greedy = greedy_search(model, src, lengths, **KW)
    beam = beam_search(model, src, lengths, beam_size=1, length_penalty_kind="none", **KW)
    assert [h.tokens for h in greedy] == [b[0].tokens for b in beam]
    for g, b in zip(greedy, beam):
        assert g.log_prob == pytest.approx(b[0].log_prob, abs=1e-4)
    assert len({len(h.tokens) for h in greedy}) > 1  # the test sees different lengths


@pytest.mark.parametrize("beam_size", [1, 4])
def test_batch_equals_sentences_one_by_one(model: torch.nn.Module, beam_size: int) -> None:
    src, lengths = sources(12, seed=1)
    batched = beam_search(model, src, lengths, beam_size=beam_size, n_best=beam_size, **KW)
    for i in range(len(src)):
        n = int(lengths[i])
        alone = beam_search(model, src[i : i + 1, :n], lengths[i : i + 1], beam_size=beam_size, n_best=beam_size, **KW)
        assert [h.tokens for h in alone[0]] == [h.tokens for h in batched[i]]
        assert [h.score for h in alone[0]] == pytest.approx([h.score for h in batched[i]], abs=1e-4)


def test_greedy_batch_equals_sentences(model: torch.nn.Module) -> None:
    src, lengths = sources(10, seed=2)
    batched = greedy_search(model, src, lengths, **KW)
    for i in range(len(src)):
        alone = greedy_search(model, src[i : i + 1, : int(lengths[i])], lengths[i : i + 1], **KW)
        assert alone[0].tokens == batched[i].tokens


def test_n_best_sorted_unique_and_scored(model: torch.nn.Module) -> None:
    src, lengths = sources(6, seed=3)
    results = beam_search(model, src, lengths, beam_size=5, n_best=3, length_penalty_kind="gnmt", alpha=0.6, **KW)
    for hyps, length in zip(results, lengths.tolist()):
        assert len(hyps) == 3
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 3
        for h in hyps:
            assert EOS not in h.tokens and len(h.tokens) <= int(1.0 * length + 4)
            assert h.score == pytest.approx(h.log_prob / length_penalty(len(h.tokens) + 1, "gnmt", 0.6))


def test_hypothesis_log_prob_equals_forced_decoding(model: torch.nn.Module) -> None:
    src, lengths = sources(5, seed=4)
    hyps = [b[0] for b in beam_search(model, src, lengths, beam_size=3, **KW)]
    t = max(len(h.tokens) for h in hyps) + 1
    tgt_in = torch.full((5, t), PAD)
    tgt_out = torch.full((5, t), PAD)
    for i, h in enumerate(hyps):
        tgt_in[i, : len(h.tokens) + 1] = torch.tensor([BOS, *h.tokens])
        tgt_out[i, : len(h.tokens) + 1] = torch.tensor([*h.tokens, EOS])
    forced = forced_log_probs(model, src, lengths, tgt_in, tgt_out, PAD).sum(dim=1)
    assert forced.tolist() == pytest.approx([h.log_prob for h in hyps], abs=1e-4)


def test_min_and_max_length(model: torch.nn.Module) -> None:
    src, lengths = sources(8, seed=5)
    kw = dict(KW, max_length_a=0.0, max_length_b=3)
    for h in greedy_search(model, src, lengths, min_length=2, **kw):
        assert 2 <= len(h.tokens) <= 3
    for hyps in beam_search(model, src, lengths, beam_size=3, n_best=3, min_length=2, **kw):
        assert all(2 <= len(h.tokens) <= 3 for h in hyps)


def test_length_penalties() -> None:
    assert length_penalty(7, "none", 1.0) == 1.0
    assert length_penalty(7, "average", 1.0) == 7.0
    assert length_penalty(7, "gnmt", 1.0) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="none, average, gnmt"):
        length_penalty(7, "wu", 1.0)


def test_select_reorders_named_tuples(model: torch.nn.Module) -> None:
    src, lengths = sources(3)
    encoded = model.encode(src, lengths)
    picked = select(encoded, torch.tensor([2, 0]))
    assert type(picked) is type(encoded)
    torch.testing.assert_close(picked.outputs, encoded.outputs[[2, 0]])


def test_beam_reorders_lstm_states() -> None:
    torch.manual_seed(5)
    config = ModelConfig(
        encoder=EncoderConfig(cell="lstm", embedding_dim=8, hidden_size=8, num_layers=2),
        decoder=DecoderConfig(cell="lstm", embedding_dim=8, hidden_size=12, output_size=8, num_layers=2),
    )
    lstm = build_model(config, V, V).eval()
    src, lengths = sources(8, seed=6)
    greedy = greedy_search(lstm, src, lengths, **KW)
    beam = beam_search(lstm, src, lengths, beam_size=1, length_penalty_kind="none", **KW)
    assert [h.tokens for h in greedy] == [b[0].tokens for b in beam]
    wide = beam_search(lstm, src, lengths, beam_size=4, **KW)
    for i in range(len(src)):
        alone = beam_search(lstm, src[i : i + 1, : int(lengths[i])], lengths[i : i + 1], beam_size=4, **KW)
        assert alone[0][0].tokens == wide[i][0].tokens


@pytest.mark.parametrize("beam_size", [1, 3])
def test_full_vocabulary_list_changes_nothing(model: torch.nn.Module, beam_size: int) -> None:
    """A shortlist that holds every piece is the unrestricted search."""
    src, lengths = sources(8, seed=4)
    every = torch.arange(V)
    free = beam_search(model, src, lengths, beam_size=beam_size, n_best=beam_size, **KW)
    listed = beam_search(model, src, lengths, beam_size=beam_size, n_best=beam_size, vocab=every, **KW)
    assert [[h.tokens for h in n] for n in free] == [[h.tokens for h in n] for n in listed]
    assert [h.log_prob for n in free for h in n] == pytest.approx([h.log_prob for n in listed for h in n], abs=1e-5)
    greedy = greedy_search(model, src, lengths, **KW)
    assert [h.tokens for h in greedy] == [h.tokens for h in greedy_search(model, src, lengths, vocab=every, **KW)]


def test_shortlisted_search_stays_in_its_list(model: torch.nn.Module) -> None:
    """Outputs use listed pieces only, scored by the softmax over the list: forced decoding
    of a restricted model (generator rows of the list only) gives the same log-probability."""
    src, lengths = sources(6, seed=5)
    allowed = torch.tensor([EOS, 5, 7, 11, 12, 20, 29])
    beams = beam_search(model, src, lengths, beam_size=3, vocab=allowed, **KW)
    greedy = greedy_search(model, src, lengths, vocab=allowed, **KW)
    used = {t for n in beams for h in n for t in h.tokens} | {t for h in greedy for t in h.tokens}
    assert used and used <= set(allowed.tolist())
    encoded = model.encode(src, lengths)
    state, prev = model.init_state(encoded), torch.full((len(src),), BOS)
    out = model.step(prev, state, encoded, allowed)
    full = torch.log_softmax(model.logits(model.decoder.step(prev, state, encoded).features), dim=-1)
    assert torch.allclose(out.log_probs, torch.log_softmax(full[:, allowed], dim=-1), atol=1e-6)
    with pytest.raises(ValueError, match="EOS"):
        beam_search(model, src, lengths, beam_size=3, vocab=torch.tensor([5, 7]), **KW)


def test_token_log_probs_sum_to_the_log_prob(model: torch.nn.Module) -> None:
    src, lengths = sources(10, seed=7)
    greedy = greedy_search(model, src, lengths, **KW)
    beams = beam_search(model, src, lengths, beam_size=4, n_best=4, **KW)
    for h in [*greedy, *(h for n in beams for h in n)]:
        assert len(h.token_log_probs) == len(h.tokens) + 1
        assert sum(h.token_log_probs) == pytest.approx(h.log_prob, abs=1e-4)
        assert all(lp <= 0.0 for lp in h.token_log_probs)


def test_token_log_probs_beam_one_equals_greedy_and_batch_equals_one_by_one(model: torch.nn.Module) -> None:
    src, lengths = sources(12, seed=8)
    greedy = greedy_search(model, src, lengths, **KW)
    beam = beam_search(model, src, lengths, beam_size=1, length_penalty_kind="none", **KW)
    for g, b in zip(greedy, beam):
        assert g.token_log_probs == pytest.approx(b[0].token_log_probs, abs=1e-4)
    wide = beam_search(model, src, lengths, beam_size=3, n_best=3, **KW)
    for i in range(len(src)):
        n = int(lengths[i])
        alone = beam_search(model, src[i : i + 1, :n], lengths[i : i + 1], beam_size=3, n_best=3, **KW)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in wide[i]]
        for a, w in zip(alone, wide[i]):  # backtracked with the beams, as the tokens are
            assert a.token_log_probs == pytest.approx(w.token_log_probs, abs=1e-4)
        single = greedy_search(model, src[i : i + 1, :n], lengths[i : i + 1], **KW)[0]
        assert single.token_log_probs == pytest.approx(greedy[i].token_log_probs, abs=1e-4)


def test_token_log_probs_equal_forced_decoding(model: torch.nn.Module) -> None:
    """Each piece's log-probability in the beam is the one teacher forcing gives it (the
    hypotheses that ended before their length limit, where EOS is not forced)."""
    src, lengths = sources(8, seed=9)
    hyps = [h for n in beam_search(model, src, lengths, beam_size=3, n_best=3, **KW) for h in n]
    rows = torch.arange(len(src)).repeat_interleave(3)
    limits = [int(1.0 * n + 4) for n in lengths[rows].tolist()]
    t = max(len(h.tokens) for h in hyps) + 1
    tgt_in, tgt_out = torch.full((len(hyps), t), PAD), torch.full((len(hyps), t), PAD)
    for i, h in enumerate(hyps):
        tgt_in[i, : len(h.tokens) + 1] = torch.tensor([BOS, *h.tokens])
        tgt_out[i, : len(h.tokens) + 1] = torch.tensor([*h.tokens, EOS])
    forced = forced_log_probs(model, src[rows], lengths[rows], tgt_in, tgt_out, PAD)
    ended = [i for i, h in enumerate(hyps) if len(h.tokens) < limits[i]]
    assert ended
    for i in ended:
        assert forced[i, : len(hyps[i].tokens) + 1].tolist() == pytest.approx(hyps[i].token_log_probs, abs=1e-4)
