"""Corpora in, token-bounded batches out: sources (read), subwords (SentencePiece), batching."""
