#!/usr/bin/env python
"""Add the shortlist table (``seq2seq.data.shortlist``) to a checkpoint written before
checkpoints carried one, so that ``seq2seq translate --shortlist K`` can use it.

    python scripts/add_shortlist.py CKPT [--output OUT.pt]

The table is counted on the training corpus named in the checkpoint's config, encoded with
the checkpoint's own SentencePiece models and length-filtered as training did, exactly as
``seq2seq train`` now counts it. The checkpoint is rewritten atomically (``--output``:
written there instead); everything else in it is kept as it is.

Exit codes: 0 done, 2 unreadable checkpoint or corpus (the message names the file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seq2seq.checkpoint import atomic_save, read_payload
from seq2seq.config import config_from_dict
from seq2seq.data.batching import filter_pairs, to_parallel_data
from seq2seq.data.prepare import corpus_name
from seq2seq.data.shortlist import build_shortlist
from seq2seq.data.sources import load_corpus
from seq2seq.data.subwords import Vocab, encode_dataset
from seq2seq.errors import CheckpointError, ConfigError, DataError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--output", help="write the result here instead of rewriting CKPT")
    args = parser.parse_args(argv)
    try:
        payload = read_payload(args.checkpoint)
        config = config_from_dict(payload["config"]).data
        src_vocab, tgt_vocab = Vocab(payload["vocabs"]["src"]), Vocab(payload["vocabs"]["tgt"])
        raw = load_corpus(config.train, config.src_lang, config.tgt_lang)
        encoded = encode_dataset(raw, src_vocab, tgt_vocab, config.num_proc)
        vocab_size = max(len(src_vocab), len(tgt_vocab))
        pairs = filter_pairs(to_parallel_data(encoded, vocab_size), config.max_length, name=corpus_name(config.train))
    except (CheckpointError, ConfigError, DataError) as e:
        print(f"add_shortlist: error: {e}", file=sys.stderr)
        return 2
    payload["shortlist"] = build_shortlist(pairs, len(src_vocab), len(tgt_vocab)).to_data()
    output = Path(args.output or args.checkpoint)
    atomic_save(payload, output)
    print(f"{output}: shortlist counted on {len(pairs)} pairs of {corpus_name(config.train)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
