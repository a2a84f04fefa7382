"""Translation keeps input order, maps empty lines to empty lines and streams in chunks."""

import pytest
import torch

from seq2seq.config import DecoderConfig, EncoderConfig, ModelConfig, SearchConfig
from seq2seq.data.subwords import Vocab, train_sentencepiece
from seq2seq.errors import ConfigError
from seq2seq.models import build_model
from seq2seq.translate import translate_lines

LINES = ["ein Hund", "", "zwei kleine Kinder spielen im Wasser am Strand", "Mann", "eine Frau liest ein Buch"]


@pytest.fixture(scope="module")
def setup() -> tuple[torch.nn.Module, Vocab]:
    vocab = Vocab(train_sentencepiece([line for line in LINES if line] * 10, "unigram", 40))
    torch.manual_seed(0)
    config = ModelConfig(
        encoder=EncoderConfig(embedding_dim=8, hidden_size=8),
        decoder=DecoderConfig(embedding_dim=8, hidden_size=8, output_size=8),
    )
    return build_model(config, len(vocab), len(vocab)).eval(), vocab


@pytest.mark.parametrize("beam_size", [1, 3])
def test_order_empty_lines_and_chunking(setup: tuple[torch.nn.Module, Vocab], beam_size: int) -> None:
    model, vocab = setup
    search = SearchConfig(beam_size=beam_size, batch_size=2, max_length_a=1.0, max_length_b=3)
    cpu = torch.device("cpu")
    whole = [n[0][0] for n in translate_lines(model, LINES, search, vocab, vocab, cpu)]
    chunked = [n[0][0] for n in translate_lines(model, LINES, search, vocab, vocab, cpu, chunk_lines=2)]
    one_by_one = [next(translate_lines(model, [line], search, vocab, vocab, cpu))[0][0] for line in LINES]
    assert whole == chunked == one_by_one
    assert len(whole) == len(LINES) and whole[1] == ""


def test_bf16_decoding_runs_on_cpu(setup: tuple[torch.nn.Module, Vocab]) -> None:
    model, vocab = setup
    search = SearchConfig(beam_size=3, precision="bf16", max_length_b=5)
    out = list(translate_lines(model, LINES, search, vocab, vocab, torch.device("cpu")))
    assert len(out) == len(LINES) and all(len(n) == 1 for n in out)


def test_forked_workers_equal_one_process(setup: tuple[torch.nn.Module, Vocab]) -> None:
    model, vocab = setup
    search = SearchConfig(beam_size=3, batch_size=1, max_length_a=1.0, max_length_b=3)
    cpu = torch.device("cpu")
    one = [[(t, h.tokens, h.score) for t, h in n] for n in translate_lines(model, LINES, search, vocab, vocab, cpu)]
    two = [
        [(t, h.tokens, h.score) for t, h in n]
        for n in translate_lines(model, LINES, search, vocab, vocab, cpu, workers=2)
    ]
    assert one == two
    with pytest.raises(ConfigError, match="more on the CPU only"):
        list(translate_lines(model, LINES, search, vocab, vocab, torch.device("meta"), workers=2))


def test_shortlist_needs_a_table(setup: tuple[torch.nn.Module, Vocab]) -> None:
    model, vocab = setup
    with pytest.raises(ConfigError, match="no shortlist table"):
        list(translate_lines(model, LINES, SearchConfig(shortlist=5), vocab, vocab, torch.device("cpu")))
