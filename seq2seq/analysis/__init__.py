"""Experiments that measure the recurrent-network literature's claims on the package's cells.

- :mod:`~seq2seq.analysis.long_range`: a synthetic task whose answer is the token L steps
  back, a small classifier over any cell of :mod:`seq2seq.models.cells`, and its training
  and evaluation (``scripts/long_range.py``);
- :mod:`~seq2seq.analysis.gradient_flow`: the norm of the loss's gradient with respect to a
  layer's state at every step (``scripts/gradient_flow.py``);
- :mod:`~seq2seq.analysis.runs`: independent runs in parallel processes, one JSON each;
- :mod:`~seq2seq.analysis.report`: their markdown tables and plots.

Above the models layer: imports :mod:`seq2seq.models`, :mod:`seq2seq.config`,
:mod:`seq2seq.errors` and :mod:`seq2seq.atomic` (results are written whole or not at all),
never data, kernels, search, checkpoints, training or the command line.
"""
