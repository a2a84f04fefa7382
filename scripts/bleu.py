#!/usr/bin/env python
"""Score detokenized hypotheses against references with sacreBLEU (BLEU, chrF, TER).

python scripts/bleu.py HYP REF [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

from seq2seq.evaluate import format_scores, score_corpus
from seq2seq.lines import read_lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("hyp", help="hypotheses, one per line")
    parser.add_argument("ref", help="references, one per line")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    try:
        scores = score_corpus(read_lines(args.hyp), read_lines(args.ref))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        print(f"bleu.py: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(scores) if args.json else format_scores(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
