"""seq2seq: recurrent encoder-decoder machine translation."""
