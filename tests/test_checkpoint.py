"""Checkpoints: a save/load round trip gives identical outputs; writes are atomic; bad files
give a clear error."""

from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import Stored, load_checkpoint, read_checkpoint, save_checkpoint, write_checkpoint
from seq2seq.config import DecoderConfig, EncoderConfig, ModelConfig, RunConfig
from seq2seq.data.subwords import Vocab, train_sentencepiece
from seq2seq.errors import CheckpointError
from seq2seq.models import build_model
from seq2seq.translate import translate_stream

SENTENCES = [f"ein {w} sieht {v} im Park" for w in ("Hund", "Mann", "Kind") for v in ("Vögel", "Bälle")] * 5


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab(train_sentencepiece(SENTENCES, "unigram", 40))


def test_round_trip_gives_identical_translations(tmp_path: Path, vocab: Vocab) -> None:
    config = RunConfig(
        model=ModelConfig(
            encoder=EncoderConfig(cell="lstm", embedding_dim=8, hidden_size=8, num_layers=2),
            decoder=DecoderConfig(cell="lstm", embedding_dim=8, hidden_size=8, output_size=8, num_layers=2),
        )
    )
    torch.manual_seed(0)
    model = build_model(config.model, len(vocab), len(vocab)).eval()
    save_checkpoint(tmp_path / "m.pt", config, model, vocab, vocab, {"step": 3})
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.config == config and loaded.train_state == {"step": 3}
    assert loaded.src_vocab.model_proto == vocab.model_proto
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key])
    lines = SENTENCES[:4]
    device = torch.device("cpu")
    before = list(translate_stream(model, lines, config.search, vocab, vocab, device))
    after = list(translate_stream(loaded.model, lines, config.search, vocab, vocab, device))
    assert [[t for t, _ in n] for _, n in before] == [[t for t, _ in n] for _, n in after]


def test_failed_write_keeps_the_old_file(tmp_path: Path, vocab: Vocab) -> None:
    path = tmp_path / "last.pt"
    stored = Stored(RunConfig(), vocab, vocab, {"w": torch.ones(2)}, {"step": 1})
    write_checkpoint(path, stored)

    class Unpicklable:
        def __reduce__(self) -> tuple:
            raise RuntimeError("disk full")

    stored.train_state = {"step": 2, "bad": Unpicklable()}
    with pytest.raises(RuntimeError, match="disk full"):
        write_checkpoint(path, stored)
    assert read_checkpoint(path).train_state == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_read_checkpoint_round_trips_plain_data(tmp_path: Path, vocab: Vocab) -> None:
    """What write_checkpoint writes, read_checkpoint returns; a damaged payload is refused by name."""
    stored = Stored(RunConfig(), vocab, vocab, {"w": torch.arange(3.0)}, None)
    write_checkpoint(tmp_path / "a.pt", stored)
    back = read_checkpoint(tmp_path / "a.pt")
    assert back.config == stored.config and back.train_state is None and back.shortlist is None
    assert back.src_vocab.model_proto == vocab.model_proto and torch.equal(back.weights["w"], stored.weights["w"])
    payload = torch.load(tmp_path / "a.pt", weights_only=True)
    payload["config"]["search"]["beam_size"] = 0
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad\.pt.*search\.beam_size"):
        read_checkpoint(tmp_path / "bad.pt")
    del payload["vocabs"]
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="damaged"):
        read_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize("content", [b"", b"garbage", None])
def test_bad_checkpoints_are_refused_by_name(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "x.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
    torch.save({"format": 99}, path)
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(path)
