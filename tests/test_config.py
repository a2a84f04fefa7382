"""Config loading: every error names the dotted key; every shipped config loads and builds."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from seq2seq.config import RunConfig, SearchConfig, config_from_dict, config_to_dict, load_config
from seq2seq.errors import ConfigError
from seq2seq.models import build_model
from seq2seq.schema import check_value

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_load(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, {})) == RunConfig()


@pytest.mark.parametrize(
    ("data", "needles"),
    [
        ({"model": {"encoder": {"cel": "gru"}}}, ["model.encoder.cel", "unknown key", "cell"]),
        ({"model": {"encoder": {"cell": "gruu"}}}, ["model.encoder.cell", "'gruu'", "rnn, gru, lstm"]),
        ({"training": {"learning_rate": "fast"}}, ["training.learning_rate", "expected a number", "fast"]),
        ({"training": {"max_steps": 1.5}}, ["training.max_steps", "expected an integer"]),
        ({"model": {"encoder": {"dropout": 1.5}}}, ["model.encoder.dropout", "1.5", "outside"]),
        ({"model": {"encoder": {"bidirectional": "yes"}}}, ["model.encoder.bidirectional", "true or false"]),
        ({"data": {"train": {"format": "csv"}}}, ["data.train.format", "text, tsv, jsonl, hf, multi30k"]),
        ({"search": {"beam_size": 2, "n_best": 3}}, ["search.n_best", "beam_size"]),
        ({"modle": {}}, ["modle", "unknown key", "model"]),
        ({"training": {"betas": [0.9]}}, ["training.betas", "2 numbers"]),
    ],
)
def test_errors_name_the_key_and_the_choices(tmp_path: Path, data: dict, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data))
    for needle in needles:
        assert needle in str(err.value)
    assert str(tmp_path / "run.yaml") in str(err.value)


def test_tied_embeddings_need_matching_sizes(tmp_path: Path) -> None:
    data = {"model": {"decoder": {"tie_embeddings": True, "output_size": 100, "embedding_dim": 64}}}
    with pytest.raises(ConfigError, match="tie_embeddings"):
        load_config(write(tmp_path, data))


def test_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, {"training": {"learning_rate": 0.1}})
    config = load_config(path, ["training.learning_rate=5e-4", "model.encoder.cell=lstm", "data.test.path=x"])
    assert config.training.learning_rate == 5e-4
    assert config.model.encoder.cell == "lstm"
    assert config.data.test is not None and config.data.test.path == "x"
    with pytest.raises(ConfigError, match=r"training\.lr"):
        load_config(path, ["training.lr=1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(path, ["training.learning_rate"])


def test_n_best_rule_holds_however_a_search_config_is_made() -> None:
    """One rule, checked at construction: from a file, by replace (command-line flags) and
    by the search itself."""
    import torch

    from seq2seq.search import beam_search

    with pytest.raises(ConfigError, match=r"search\.n_best: 6 must be in 1\.\.search\.beam_size \(5\)"):
        dataclasses.replace(SearchConfig(), n_best=6)
    with pytest.raises(ConfigError, match=r"search\.n_best: 3 must be in 1\.\.search\.beam_size \(2\)"):
        src = torch.zeros(1, 1, dtype=torch.long)
        beam_search(torch.nn.Module(), src, torch.ones(1), beam_size=2, bos=1, eos=2, n_best=3)  # type: ignore[arg-type]
    assert dataclasses.replace(SearchConfig(), beam_size=2, n_best=2).n_best == 2


def test_check_value_is_the_loaders_check() -> None:
    assert check_value(SearchConfig, "beam_size", 3, "x") == 3
    alpha = check_value(SearchConfig, "alpha", 1, "x")
    assert alpha == 1.0 and isinstance(alpha, float)
    with pytest.raises(ConfigError, match=r"--beam-size: 0 is outside \[1, inf\]"):
        check_value(SearchConfig, "beam_size", 0, "--beam-size")
    with pytest.raises(ConfigError, match=r"search\.precision: 'fp16' is not one of auto, fp32, bf16"):
        check_value(SearchConfig, "precision", "fp16", "search.precision")


def test_plain_data_round_trip() -> None:
    config = RunConfig()
    assert config_from_dict(config_to_dict(config)) == config


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_and_builds(path: Path) -> None:
    config = load_config(path)
    model = build_model(config.model, config.data.subwords.vocab_size, config.data.subwords.vocab_size)
    assert sum(p.numel() for p in model.parameters()) > 0
