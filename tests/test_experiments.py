"""The stability metrics of a training log window (gradient norms before clipping, the share of
clipped updates, loss spikes) and the experiments that read them: seq2seq.train.experiment's
training runs, scripts/compare_cells.py and scripts/ablations.py (their tables from per-run
JSON, and a tiny end-to-end run of each)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY, data_overrides, load_script, write_toy_corpus

from seq2seq.cli import main as seq2seq_main
from seq2seq.errors import ConfigError
from seq2seq.train.experiment import TrainingRun, budget, check_flags, parser, run_trainings
from seq2seq.train.guard import WARMUP, DivergenceGuard
from seq2seq.train.logs import UNCLIPPED_THRESHOLD, Window, read_metrics, summarize_metrics

# --- the metrics --------------------------------------------------------------------------


def test_a_window_reports_the_norms_the_clipped_share_and_the_spikes() -> None:
    window = Window(clip_grad_norm=2.0)
    for norm, spike in ((1.0, False), (3.0, True), (2.0, False), (5.0, True), (math.inf, False)):
        window.add(1.0, 1, 1, norm, spike)  # the non-finite norm (a skipped update) is not counted
    out = window.flush()
    assert out["grad_norm_median"] == 2.5 and out["grad_norm_max"] == 5.0
    assert out["clip_rate"] == 0.5  # 3.0 and 5.0 exceed 2.0; 2.0 itself is not clipped
    assert out["loss_spikes"] == 2
    empty = window.flush()  # the next window starts afresh
    assert empty["loss_spikes"] == 0 and math.isnan(empty["clip_rate"]) and math.isnan(empty["grad_norm_max"])


def test_without_clipping_the_rate_is_the_share_that_clipping_at_one_would_clip() -> None:
    window = Window(clip_grad_norm=0.0)
    for norm in (0.5, 0.9, 1.5, 4.0):
        window.add(1.0, 1, 1, norm)
    assert UNCLIPPED_THRESHOLD == 1.0 and window.flush()["clip_rate"] == 0.5


def test_the_guard_says_which_losses_were_spikes() -> None:
    guard = DivergenceGuard(max_bad_updates=3)
    assert not any(guard.record(step, True, 2.0, 1.0, None) for step in range(1, WARMUP + 2))
    assert guard.record(WARMUP + 2, True, 100.0, 1.0, None)
    assert not guard.record(WARMUP + 3, False, math.nan, 1.0, None)  # skipped: no loss to judge


def test_a_run_summary_reads_the_windows_and_validations() -> None:
    def window(step: int, elapsed: float, tokens_per_s: float, norm: float, clip_rate: float) -> dict[str, Any]:
        figures = {"tokens_per_s": tokens_per_s, "grad_norm_median": norm, "clip_rate": clip_rate, "loss_spikes": 1}
        return {"step": step, "elapsed": elapsed, "loss": 3.0, **figures}

    records = [
        window(10, 1.0, 100.0, 2.0, 1.0),
        {"step": 10, "elapsed": 1.0, "dev_loss": 4.0, "dev_ppl": 54.6, "dev_bleu": 1.5},
        window(20, 3.0, 300.0, 1.0, 0.5),
        window(30, 4.0, 200.0, math.nan, math.nan),  # every update of the window skipped
        {"step": 30, "elapsed": 4.0, "dev_loss": 3.5, "dev_ppl": 33.1, "dev_bleu": 1.0},
    ]
    summary = summarize_metrics(records)
    assert summary["steps"] == 30 and summary["best_dev_bleu"] == 1.5 and summary["final_dev_loss"] == 3.5
    assert summary["tokens_per_s"] == 200.0 and summary["loss_spikes"] == 3
    assert summary["updates_per_s"] == 7.5  # the median of the two spans between windows: 5 and 10 a second
    assert summary["clip_rate"] == 0.75  # the windows that had updates to count, each weighted by its updates
    assert summary["grad_norm_median"] == 1.5 and [d["step"] for d in summary["dev"]] == [10, 30]


def train_tiny(run: Path, corpus: Path, *sets: str) -> list[dict[str, Any]]:
    flags = [x for s in ("training.max_steps=20", "training.log_every=5", *sets) for x in ("--set", s)]
    assert seq2seq_main(["train", TINY, "--run-dir", str(run), *data_overrides(corpus), *flags]) == 0
    return [r for r in read_metrics(run / "metrics.jsonl") if "tokens_per_s" in r]


@pytest.mark.slow
def test_training_logs_the_clip_rate_against_the_threshold(tmp_path: Path) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus", n_train=120, n_dev=8)
    tiny = train_tiny(tmp_path / "tiny", corpus, "training.clip_grad_norm=1e-6")
    huge = train_tiny(tmp_path / "huge", corpus, "training.clip_grad_norm=1e6")
    off = train_tiny(tmp_path / "off", corpus, "training.clip_grad_norm=0")
    assert len(tiny) == len(huge) == len(off) == 4
    assert all(r["clip_rate"] == 1.0 for r in tiny) and all(r["clip_rate"] == 0.0 for r in huge)
    for r in [*tiny, *huge, *off]:
        assert 0 < r["grad_norm_median"] <= r["grad_norm_max"] and r["loss_spikes"] == 0
    # A threshold that never fires changes nothing: the same norms as no clipping at all.
    assert [r["grad_norm_max"] for r in huge] == [r["grad_norm_max"] for r in off]
    for r in off:  # without clipping: the share above 1.0
        assert r["clip_rate"] == 0.0 if r["grad_norm_max"] <= 1.0 else r["clip_rate"] > 0
        assert r["clip_rate"] >= 0.5 if r["grad_norm_median"] > 1.0 else r["clip_rate"] <= 0.5


# --- the scripts' reports -----------------------------------------------------------------


def write(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")


def cell_run(cell: str, seed: int, test_bleu: float, curve: list[tuple[int, float, float]]) -> dict[str, Any]:
    dev = [{"step": s, "elapsed": e, "dev_bleu": b, "dev_loss": 3.0} for s, e, b in curve]
    evaluation = {"bleu": test_bleu}
    return {"cell": cell, "seed": seed, "parameters": 1234, "evaluation": evaluation, "steps": curve[-1][0], "dev": dev}


def test_compare_cells_report_only_tabulates_the_runs_in_the_directory(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write(
        runs / "gru-s1.json",
        {**cell_run("gru", 1, 20.0, [(50, 60.0, 10.0), (100, 120.0, 14.0)]), "best_dev_bleu": 14.0},
    )
    write(
        runs / "gru-s2.json",
        {**cell_run("gru", 2, 22.0, [(50, 62.0, 12.0), (100, 118.0, 16.0)]), "best_dev_bleu": 16.0},
    )
    write(runs / "rnn-s1.json", {**cell_run("rnn", 1, 9.5, [(50, 30.0, 4.0)]), "best_dev_bleu": 4.0})
    write(runs / "rnn-s2.json", {"cell": "rnn", "seed": 2, "error": "rnn-s2 failed (exit 1)"})
    speed = {"seconds_per_update": 0.25, "tokens_per_s": 4000.0, "epoch_seconds": 200.0, "decode_sentences_per_s": 8.0}
    write(tmp_path / "speed.json", {"cells": {"gru": speed}})
    compare = load_script("compare_cells")
    assert compare.main(["--out-dir", str(tmp_path), "--report-only"]) == 0
    table = (tmp_path / "cells.md").read_text(encoding="utf-8").splitlines()
    rnn, gru = table[2].split(" | "), table[3].split(" | ")  # in the order of seq2seq.config.CELLS
    assert rnn[0] == "| rnn" and rnn[2] == "9.50" and "failed (seed 2)" in rnn[3] and rnn[5] == rnn[7] == "–"
    assert gru[1] == "1,234" and gru[2] == "21.00" and gru[3] == "20.00 (seed 1), 22.00 (seed 2)"
    # dev BLEU of the mean curve: 11 at step 50 (within the first two thirds), 15 at step 100
    assert gru[4] == "15.00" and gru[5] == "4.00" and gru[6] == "100"
    assert gru[7:] == ["4,000", "0.250", "200", "8.0 |"]
    gru_runs = [json.loads((runs / f"gru-s{s}.json").read_text()) for s in (1, 2)]
    # the seeds' mean at each validation: step, minutes, dev BLEU
    assert compare.mean_curve([r["dev"] for r in gru_runs]) == [(50, 61 / 60, 11.0), (100, 119 / 60, 15.0)]
    assert compare.mean_curve([]) == []
    assert compare.late_gain([(100, 1.0, 5.0), (200, 2.0, 7.0), (300, 3.0, 6.5)]) == 0.0  # peaked earlier
    pytest.importorskip("matplotlib")
    assert (tmp_path / "cells.png").stat().st_size > 0


def test_ablations_report_only_tabulates_each_variant(tmp_path: Path) -> None:
    plan = [
        {"row": "clipping", "variant": "1.0", "run": "base"},
        {"row": "clipping", "variant": "off", "run": "clipping-off"},
    ]
    write(tmp_path / "plan.json", plan)
    figures = {"final_dev_loss": 3.0, "loss_spikes": 1, "clip_rate": 0.5, "updates_per_s": 2.0}
    write(tmp_path / "runs/base-s1.json", {"run": "base", "seed": 1, "best_dev_bleu": 10.0, **figures})
    write(
        tmp_path / "runs/base-s2.json", {"run": "base", "seed": 2, "best_dev_bleu": 12.0, **figures, "loss_spikes": 2}
    )
    write(tmp_path / "runs/clipping-off-s1.json", {"run": "clipping-off", "seed": 1, "error": "diverged"})
    assert load_script("ablations").main(["--out-dir", str(tmp_path), "--report-only"]) == 0
    table = (tmp_path / "ablations.md").read_text(encoding="utf-8").splitlines()
    assert (
        table[2] == "| gradient clipping | 1.0 | 11.00 | 10.00 (seed 1), 12.00 (seed 2) | 3.000 | 1.5 | 0.50 | 2.00 |"
    )
    assert table[3] == "| gradient clipping | off | – | failed (seed 1) | – | – | – | – |"


def test_a_run_done_with_the_same_settings_is_skipped_and_a_failed_one_recorded(tmp_path: Path) -> None:
    sets = tuple(budget(1, 10, 5))
    assert "training.max_steps=10" in sets and "training.threads=1" in sets and "training.seed=1" in sets
    done = TrainingRun("done-s1", TINY, sets, {"seed": 1})
    write(tmp_path / "done-s1.json", {"seed": 1, "settings": done.settings, "best_dev_bleu": 3.0})
    broken = TrainingRun("broken-s1", str(tmp_path / "missing.yaml"), sets, {"seed": 1})
    finished: list[str] = []
    errors = run_trainings([done, broken], tmp_path, jobs=2, on_done=lambda name, _: finished.append(name))
    assert finished == ["broken-s1"] and not (tmp_path / "done-s1.log").exists()  # not run again
    assert len(errors) == 1 and "broken-s1 failed" in errors[0] and "broken-s1.log" in errors[0]
    saved = json.loads((tmp_path / "broken-s1.json").read_text(encoding="utf-8"))
    assert saved["seed"] == 1 and saved["settings"] == broken.settings and "error" in saved
    # other settings (here: an evaluation after training) make the same name a new run
    assert TrainingRun("done-s1", TINY, sets, {"seed": 1}, evaluate=("--split", "test")).settings != done.settings


def test_experiment_flags_are_checked() -> None:
    flags = parser(None, steps=10)
    assert check_flags(flags.parse_args([TINY, "--out-dir", "x", "--seeds", " 1, 2,"])) == [1, 2]
    for text in ("", "1,x", "-1"):
        with pytest.raises(ConfigError, match="--seeds"):
            check_flags(flags.parse_args([TINY, "--out-dir", "x", f"--seeds={text}"]))
    with pytest.raises(ConfigError, match="--validate-every: 0 must be at least 1"):
        check_flags(flags.parse_args([TINY, "--out-dir", "x", "--validate-every", "0"]))
    with pytest.raises(ConfigError, match="give CONFIG"):
        check_flags(flags.parse_args(["--out-dir", "x"]))


def test_the_scripts_name_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert load_script("compare_cells").main(["--out-dir", str(tmp_path), "--report-only"]) == 2
    assert "no run results" in capsys.readouterr().err
    assert load_script("ablations").main(["--out-dir", str(tmp_path)]) == 2
    assert "give CONFIG" in capsys.readouterr().err
    assert load_script("ablations").main([TINY, "--out-dir", str(tmp_path), "--rows", "forget_bias"]) == 2
    assert "must have LSTM cells" in capsys.readouterr().err
    assert load_script("compare_cells").main([TINY, "--out-dir", str(tmp_path), "--cells", "gru,tree"]) == 2
    assert "--cells: 'tree' is not one of" in capsys.readouterr().err


# --- tiny end-to-end runs -----------------------------------------------------------------


def toy_sets(corpus: Path) -> list[str]:
    sets = [f"data.train.path={corpus}/train", f"data.dev.path={corpus}/dev"]
    sets += ["data.test.format=text", f"data.test.path={corpus}/dev"]
    return [x for s in sets for x in ("--set", s)]


@pytest.mark.slow
def test_compare_cells_trains_tests_and_times_every_cell_and_seed(tmp_path: Path) -> None:
    corpus, out = write_toy_corpus(tmp_path / "corpus", n_train=120, n_dev=8), tmp_path / "out"
    flags = [TINY, "--out-dir", str(out), "--cells", "gru", "--seeds", "1,2", "--steps", "10", "--validate-every", "5"]
    compare = load_script("compare_cells")
    assert compare.main([*flags, "--speed-rounds", "1", "--speed-steps", "2", *toy_sets(corpus)]) == 0
    for seed in (1, 2):
        run = json.loads((out / f"runs/gru-s{seed}.json").read_text())
        assert run["steps"] == 10 and [d["step"] for d in run["dev"]] == [5, 10] and run["evaluation"]["bleu"] >= 0
    speed = json.loads((out / "speed.json").read_text())["cells"]["gru"]
    assert speed["tokens_per_s"] > 0 and speed["decode_sentences_per_s"] > 0
    row = (out / "cells.md").read_text().splitlines()[2]
    assert row.startswith("| gru |") and "(seed 1)" in row and "(seed 2)" in row
    log = out / "runs/gru-s1.log"
    before = log.stat().st_mtime_ns
    assert compare.main([*flags, "--speed-rounds", "0", *toy_sets(corpus)]) == 0
    assert log.stat().st_mtime_ns == before  # the finished runs are not run again


@pytest.mark.slow
def test_a_longer_budget_resumes_a_finished_run_and_equals_training_straight_to_it(tmp_path: Path) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus", n_train=120, n_dev=8)
    data = (f"data.train.path={corpus}/train", f"data.dev.path={corpus}/dev")

    def run(steps: int) -> TrainingRun:
        return TrainingRun("gru-s1", TINY, (*data, *budget(1, steps, 5)), {"seed": 1})

    extended, straight = tmp_path / "extended", tmp_path / "straight"
    assert run_trainings([run(10)], extended, jobs=1) == [] and run_trainings([run(20)], extended, jobs=1) == []
    assert run_trainings([run(20)], straight, jobs=1) == []
    log = (extended / "gru-s1.log").read_text(encoding="utf-8")
    assert "resumed from" in log and "step 10" in log.split("resumed from")[0]  # the first part's log is kept
    a, b = (json.loads((d / "gru-s1.json").read_text(encoding="utf-8")) for d in (extended, straight))
    assert a["settings"] == b["settings"] and a["steps"] == b["steps"] == 20
    assert [(d["step"], d["dev_loss"], d["dev_bleu"]) for d in a["dev"]] == [
        (d["step"], d["dev_loss"], d["dev_bleu"]) for d in b["dev"]
    ]
    assert [d["step"] for d in a["dev"]] == [5, 10, 15, 20]


@pytest.mark.slow
def test_ablations_train_each_variant_once(tmp_path: Path) -> None:
    corpus, out = write_toy_corpus(tmp_path / "corpus", n_train=120, n_dev=8), tmp_path / "out"
    flags = ["--rows", "clipping", "--seeds", "1", "--steps", "10", "--validate-every", "5"]
    assert load_script("ablations").main([TINY, "--out-dir", str(out), *flags, *toy_sets(corpus)]) == 0
    assert sorted(p.name for p in (out / "runs").glob("*.json")) == ["clipping-1.0-s1.json", "clipping-off-s1.json"]
    table = (out / "ablations.md").read_text().splitlines()
    assert [line.split(" | ")[1] for line in table[2:]] == ["1.0", "off"]
    assert all("(seed 1)" in line for line in table[2:])


def test_variants_that_are_the_base_config_share_one_run_whichever_rows_are_chosen() -> None:
    ablations = load_script("ablations")
    plans = [
        ablations.plan_runs(argparse.Namespace(config="configs/ablations.yaml", set=[], rows=rows))
        for rows in ("clipping,dropout,layernorm", "layernorm,dropout")
    ]
    for plan in plans:
        assert {(run, tuple(sets)) for _, _, run, sets in plan if run == "base"} == {("base", ())}
        assert sum(run == "base" for _, _, run, _ in plan) == len({row for row, _, _, _ in plan})
