#!/usr/bin/env python
"""Add the shortlist table (``seq2seq.data.shortlist``) to a checkpoint written before
checkpoints carried one, so that ``seq2seq translate --shortlist K`` can use it.

    python scripts/add_shortlist.py CKPT [--output OUT.pt]

The table is counted on the training corpus named in the checkpoint's config, encoded with
the checkpoint's own SentencePiece models and length-filtered as training does
(``seq2seq.data.prepare.count_shortlist``). The checkpoint is rewritten atomically
(``--output``: written there instead); everything else in it is kept as it is.

Exit codes: 0 done, 2 unreadable checkpoint or corpus (the message names the file).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from seq2seq.checkpoint import read_checkpoint, write_checkpoint
from seq2seq.data.prepare import corpus_name, count_shortlist
from seq2seq.errors import Seq2SeqError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--output", help="write the result here instead of rewriting CKPT")
    args = parser.parse_args(argv)
    try:
        stored = read_checkpoint(args.checkpoint)
        data = stored.config.data
        shortlist = count_shortlist(data, stored.src_vocab, stored.tgt_vocab)
        output = Path(args.output or args.checkpoint)
        write_checkpoint(output, dataclasses.replace(stored, shortlist=shortlist))
    except (Seq2SeqError, OSError) as e:
        print(f"add_shortlist.py: error: {e}", file=sys.stderr)
        return 2
    print(f"{output}: shortlist counted on the training pairs of {corpus_name(data.train)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
