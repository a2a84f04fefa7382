"""Corpus scores through sacreBLEU: BLEU, chrF and TER on detokenized text, with signatures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sacrebleu.metrics import BLEU, CHRF, TER


def score_corpus(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """BLEU (13a, cased), chrF2 and TER of detokenized hypotheses against one reference
    each. Returns ``{"bleu": float, "chrf": float, "ter": float, "signatures": {...}}``."""
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references: every line needs exactly one reference"
        )
    result: dict[str, Any] = {"signatures": {}}
    refs = [list(references)]
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF()), ("ter", TER())):
        score = metric.corpus_score(list(hypotheses), refs)
        result[name] = round(score.score, 2)
        result["signatures"][name] = str(metric.get_signature())
    return result


def format_scores(scores: dict[str, Any]) -> str:
    sig = scores["signatures"]
    return "\n".join(
        [
            f"BLEU = {scores['bleu']:.2f}  ({sig['bleu']})",
            f"chrF = {scores['chrf']:.2f}  ({sig['chrf']})",
            f"TER  = {scores['ter']:.2f}  ({sig['ter']})",
        ]
    )
