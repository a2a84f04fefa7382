"""``python -m seq2seq`` runs the command-line interface."""

import sys

from seq2seq.cli import main

sys.exit(main())
