"""Export to ONNX and a runtime without PyTorch.

:mod:`seq2seq.export.onnx` (needs torch) writes an export directory from a checkpoint;
:mod:`seq2seq.export.runtime` (numpy, onnxruntime and sentencepiece only) loads one and
translates with the search of :mod:`seq2seq.export.search`. This package's ``__init__``
imports nothing, so that importing the runtime never imports torch.
"""
