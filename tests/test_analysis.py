"""seq2seq.analysis: the long-range task's generator and classifier, the gradient-flow
measurement (against the analytic gradient of a linear recurrence, and on every cell), the
parallel runner's saved results, and a tiny end-to-end run of scripts/long_range.py and
scripts/gradient_flow.py."""

from __future__ import annotations

import importlib.util
import json
import re
import statistics
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import load_script
from torch import Tensor, nn

from seq2seq.analysis import gradient_flow, long_range
from seq2seq.analysis.runs import Run, read_results, run_all
from seq2seq.config import CELLS
from seq2seq.errors import DataError
from seq2seq.models.stack import Recurrent


def has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


# --- the task -----------------------------------------------------------------------------


@pytest.mark.parametrize("distance", [1, 7, 40])
def test_a_batch_asks_for_the_token_distance_steps_back(distance: int) -> None:
    tokens, answers = long_range.make_batch(50, distance, 6, torch.Generator().manual_seed(3))
    assert tokens.shape == (50, distance + 1) and answers.shape == (50,)
    assert tokens.dtype == answers.dtype == torch.int64
    assert torch.equal(answers, tokens[:, -1 - distance])
    assert ((answers >= 0) & (answers < 6)).all()  # answer symbols
    assert ((tokens[:, 1:] >= 6) & (tokens[:, 1:] < 12)).all()  # distractors, apart from them
    assert len(answers.unique()) > 1


def test_batches_repeat_under_a_seed_and_differ_across_seeds() -> None:
    def batch(seed: int) -> tuple[Tensor, Tensor]:
        return long_range.make_batch(32, 10, 8, torch.Generator().manual_seed(seed))

    assert all(torch.equal(a, b) for a, b in zip(batch(1), batch(1)))
    assert not torch.equal(batch(1)[0], batch(2)[0])
    # The held-out stream is no run's training stream, not even that of the same seed.
    train = long_range.generator(long_range.HELD_OUT_SEED)
    held_out = long_range.generator(0, held_out=True)
    a, b = (long_range.make_batch(32, 10, 8, g)[0] for g in (train, held_out))
    assert not torch.equal(a, b)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 5, 4), "batch_size must be at least 1"),
        ((8, 0, 4), "distance must be at least 1"),
        ((8, 5, 1), "vocab_size must be at least 2"),
    ],
)
def test_a_bad_batch_request_says_which_argument(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        long_range.make_batch(*args, torch.Generator())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("steps", 0, "steps must be at least 1"),
        ("vocab_size", 1, "vocab_size must be at least 2"),
        ("learning_rate", 0.0, "learning_rate and clip_grad_norm must be positive"),
        ("recurrent_init", "xavier", "recurrent_init must be one of default, orthogonal"),
    ],
)
def test_bad_settings_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        long_range.LongRangeSettings(**{field: value})  # type: ignore[arg-type]


def test_an_unknown_cell_lists_the_cells() -> None:
    with pytest.raises(ValueError, match="unknown cell 'elman'; choose one of rnn, gru"):
        long_range.build("elman", 0, long_range.LongRangeSettings())


def test_a_gated_cell_learns_a_short_distance_and_the_result_says_so() -> None:
    settings = long_range.LongRangeSettings(steps=150, batch_size=32, hidden_size=16, embedding_dim=8, vocab_size=4)
    result = long_range.run("gru", 2, 0, settings)
    assert result.accuracy > 0.9 > result.chance == 0.25
    assert result.final_loss < 0.5 and result.seconds > 0 and result.parameters > 0
    assert long_range.LongRangeResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


# --- the gradient-flow measurement ----------------------------------------------------------


class LinearRecurrence(Recurrent):
    """h_t = W h_{t-1} + U x_t, behind the layer interface (state (N, 1, S))."""

    def __init__(self, w: Tensor, u: Tensor) -> None:
        super().__init__()
        self.w, self.u = nn.Parameter(w), nn.Parameter(u)
        self.hidden_size = self.output_size = w.size(0)
        self.num_layers = self.num_directions = self.num_states = 1
        self.state_sizes = (w.size(0),)

    def forward(self, x: Tensor, state: tuple[Tensor, ...] | None = None, lengths: Tensor | None = None):  # type: ignore[no-untyped-def]
        h = x.new_zeros(x.size(0), self.hidden_size) if state is None else state[0][:, 0]
        outputs = []
        for xt in x.unbind(1):
            h = h @ self.w.T + xt @ self.u.T
            outputs.append(h)
        return torch.stack(outputs, 1), (h[:, None],)


def test_the_gradient_of_a_linear_recurrence_is_the_transposed_power() -> None:
    torch.manual_seed(0)
    size, steps = 5, 12
    w = torch.randn(size, size, dtype=torch.float64)
    w = 1.1 * w / torch.linalg.matrix_norm(w, ord=2)  # norms that grow with the distance
    layer = LinearRecurrence(w, torch.randn(size, 3, dtype=torch.float64))
    c = torch.randn(size, dtype=torch.float64)
    x = torch.randn(4, steps, 3, dtype=torch.float64)
    (grads,) = gradient_flow.state_gradients(layer, x, lambda h: (h @ c).sum())
    assert grads.shape == (4, steps, size)
    for t in range(1, steps + 1):
        expected = torch.linalg.matrix_power(w.T, steps - t) @ c
        torch.testing.assert_close(grads[:, t - 1], expected.expand(4, size), rtol=1e-12, atol=1e-12)
    norms = gradient_flow.gradient_norms(layer, x, lambda h: (h @ c).sum())
    torch.testing.assert_close(norms[0], grads[0].norm(dim=-1))
    assert all(p.grad is None for p in layer.parameters())  # the measurement leaves training alone


@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_gives_finite_norms_and_the_full_run_gradient_at_the_end(cell: str) -> None:
    settings = long_range.LongRangeSettings(hidden_size=8, embedding_dim=4, vocab_size=3)
    model = long_range.build(cell, 0, settings).double()
    tokens, answers = long_range.make_batch(6, 9, 3, torch.Generator().manual_seed(1))
    norms = gradient_flow.classifier_gradient_norms(model, tokens, answers)
    assert norms.shape == (model.recurrent.num_states, 10)
    assert torch.isfinite(norms).all() and (norms[0] > 0).all()
    # An LSTM's c reaches the loss only through later steps: not at all from the last one.
    assert (norms[1:, :-1] > 0).all() and (norms[1:, -1] == 0).all()
    # Parity with the whole sequence in one call: ∂L/∂h_T is the loss's gradient at the last output.
    output, _ = model.recurrent(model.embedding(tokens))
    last = output[:, -1].detach().requires_grad_()
    (grad,) = torch.autograd.grad(F.cross_entropy(model.head(last), answers, reduction="sum"), last)
    (stepped,) = gradient_flow.state_gradients(
        model.recurrent,
        model.embedding(tokens),
        lambda h: F.cross_entropy(model.head(h), answers, reduction="sum"),
    )[:1]
    torch.testing.assert_close(stepped[:, -1], grad)
    torch.testing.assert_close(norms[0, -1], grad.norm(dim=-1).mean())


def test_a_bidirectional_layer_is_refused() -> None:
    from seq2seq.models.cells import make_recurrent

    layer = make_recurrent("gru", 3, 4, bidirectional=True)
    with pytest.raises(ValueError, match="unidirectional"):
        gradient_flow.state_gradients(layer, torch.zeros(2, 3, 3), lambda h: h.sum())


# --- the runner -----------------------------------------------------------------------------


class Echo:
    def __init__(self, value: int, settings: dict) -> None:
        self.value, self.settings = value, settings

    def to_dict(self) -> dict:
        return {"value": self.value, "settings": self.settings}


calls: list[int] = []


def echo(value: int, settings: dict) -> Echo:
    calls.append(value)
    return Echo(value, settings)


def test_saved_runs_are_kept_and_runs_of_other_settings_redone(tmp_path: Path) -> None:
    calls.clear()
    runs = [Run(f"x-{i}", echo, (i, {"a": 1}), {"a": 1}) for i in range(3)]
    assert run_all(runs, tmp_path) == 3 and calls == [0, 1, 2]
    assert run_all(runs, tmp_path) == 0 and calls == [0, 1, 2]  # all saved: nothing runs
    (tmp_path / "x-1.json").unlink()
    assert run_all(runs, tmp_path) == 1 and calls == [0, 1, 2, 1]
    assert [r["value"] for r in read_results(tmp_path, "x-")] == [0, 1, 2]
    run_all([Run("x-0", echo, (0, {"a": 2}), {"a": 2})], tmp_path)
    with pytest.raises(DataError, match="different settings; use one --out-dir per setting"):
        read_results(tmp_path, "x-")
    (tmp_path / "x-0.json").write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match=r"x-0\.json: cannot read this result"):
        read_results(tmp_path, "x-")
    with pytest.raises(DataError, match=r"no y-\*\.json results in .*; run the experiment first"):
        read_results(tmp_path, "y-")


# --- the scripts ----------------------------------------------------------------------------


def test_long_range_script_saves_each_run_and_tabulates_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    main = load_script("long_range").main
    argv = ["--out-dir", str(tmp_path), "--cells", "rnn,lstmp", "--distances", "2,3", "--seeds", "0,1"]
    argv += ["--steps", "3", "--hidden-size", "8", "--eval-sequences", "20"]
    assert main([*argv, "--jobs", "2"]) == 0
    results = [json.loads(p.read_text()) for p in tmp_path.glob("long_range-*.json")]
    assert len(results) == 8
    table = (tmp_path / "long_range.md").read_text()
    assert f"table: {tmp_path / 'long_range.md'}" in capsys.readouterr().out
    for cell in ("rnn", "lstmp"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {cell} |"))
        entries = row.split("|")[2:-1]
        assert len(entries) == 2  # L=2, L=3
        for d, entry in zip((2, 3), entries):
            accs = [
                r["accuracy"]
                for r in sorted(results, key=lambda r: r["seed"])
                if (r["cell"], r["distance"]) == (cell, d)
            ]
            mean, seeds = re.fullmatch(r" (\S+) \((.*)\) ", entry).groups()  # type: ignore[union-attr]
            assert float(mean) == pytest.approx(statistics.mean(accs), abs=5e-4)
            assert [float(s) for s in seeds.split(", ")] == pytest.approx(accs, abs=5e-3)
    assert "Chance: 0.100" in table
    if has_matplotlib():
        assert (tmp_path / "long_range.png").stat().st_size > 0
    (tmp_path / "long_range.md").unlink()
    assert main(["--out-dir", str(tmp_path), "--report-only"]) == 0
    assert (tmp_path / "long_range.md").read_text() == table


def test_gradient_flow_script_saves_each_run_and_tabulates_them(tmp_path: Path) -> None:
    main = load_script("gradient_flow").main
    argv = ["--out-dir", str(tmp_path), "--cells", "rnn,lstm_peephole", "--distance", "6", "--seeds", "0"]
    assert main([*argv, "--steps", "2", "--sequences", "8"]) == 0
    results = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("gradient_flow-*.json")}
    assert set(results) == {"gradient_flow-rnn-L6-seed0.json", "gradient_flow-lstm_peephole-L6-seed0.json"}
    for r in results.values():
        assert len(r["init"]) == len(r["trained"]) == 7  # distances 0..6 from the loss
        assert (r["init_c"] is None) == (r["cell"] == "rnn")
    table = (tmp_path / "gradient_flow.md").read_text()
    assert table.count("| rnn |") == 2 and "| d=0 | d=1 | d=5 | accuracy |" in table
    if has_matplotlib():
        assert (tmp_path / "gradient_flow.png").stat().st_size > 0
    assert main(["--out-dir", str(tmp_path / "empty"), "--report-only"]) == 2  # nothing there to report


@pytest.mark.parametrize("script", ["long_range", "gradient_flow"])
def test_an_unknown_cell_flag_names_the_cell_and_the_choices(
    script: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        load_script(script).main(["--out-dir", str(tmp_path), "--cells", "gru,tree"])
    assert exit.value.code == 2
    assert "--cells: 'tree' is not one of rnn, gru" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
