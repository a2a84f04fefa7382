"""``seq2seq export --int8``: dynamically quantized copies of the exported graphs.

onnxruntime's dynamic quantization (:func:`onnxruntime.quantization.quantize_dynamic`)
stores the weights of matrix products as int8 and quantizes each product's input on the
fly (per tensor, from its range), so no calibration data is needed. It has integer kernels
for MatMul, not for Gemm or the recurrent operators: the TorchScript exporter writes a
linear map of a 2-D input as Gemm, so those are rewritten as MatMul + Add first.

What is quantized: the decoder step's matrix products, its recurrence (exported as
one-step cells, :func:`seq2seq.export.recurrent.stepwise`), its output layer and the
vocabulary projection, which make most of a step's cost; and the bridge. What stays
float32, and why: the encoder's recurrent operators (ONNX's RNN, GRU and LSTM, which have
no integer kernels here; the encoder runs once per sentence, the decoder once per piece
and beam), the attention (its key and query projections, scores and softmax; see
:data:`KEEP_FLOAT`) and the softmax over the vocabulary. Attention scores are small
differences between products of large vectors, so rounding their inputs moves the
weights and with them the context of every later step, while those projections cost
little. Embeddings are lookups (Gather), left as they are. ``scripts/bench/export_bench.py``
measures what int8 keeps of the float32 output, with these choices and with the attention
(and the recurrence) quantized too or kept float32.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

log = logging.getLogger(__name__)

# Nodes whose name contains one of these stay float32 (see the module docstring): torch's
# exporter names a node after the path of the module that computes it; the encoder graph's
# attention keys are computed outside the attention's forward, hence "/key/".
KEEP_FLOAT = ("/attention/", "/key/")
RECURRENCE = ("/rnn/",)  # the decoder's recurrence, for keep_float (the bench's variant)


def gemm_to_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite every Gemm with a constant B (and alpha = beta = 1) as MatMul (+ Add of C)."""
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or node.input[1] not in weights or not plain:
            nodes.append(node)
            continue
        b = numpy_helper.to_array(weights[node.input[1]])
        if attrs.get("transB", 0):
            name = node.input[1] + "_t"
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(b.T), name))
        else:
            name = node.input[1]
        product = node.output[0] + "_matmul" if len(node.input) > 2 else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], name], [product], name=node.name + "_matmul"))
        if len(node.input) > 2:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=node.name + "_add"))
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def quantize(directory: Path, name: str, keep_float: Sequence[str] = KEEP_FLOAT) -> str:
    """Write ``directory/name`` with int8 weights as ``*.int8.onnx``; returns its file name.
    ``keep_float``: the node name parts that stay float32 (() quantizes every MatMul, for
    ``scripts/bench/export_bench.py`` to measure what keeping them buys)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = directory / name
    target = source.with_suffix(".int8.onnx")
    prepared = source.with_suffix(".matmul.onnx")
    model = gemm_to_matmul(onnx.load(str(source)))
    onnx.save(model, str(prepared))
    keep = [node.name for node in model.graph.node if any(k in node.name for k in keep_float)]
    root = logging.getLogger()
    level = root.level
    # quantize_dynamic advises its pre-processing (shape inference, graph optimisation) on the
    # root logger at every call; onnxruntime optimises each graph when it loads it anyway.
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            str(prepared),
            str(target),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=keep,
        )
    finally:
        root.setLevel(level)
        prepared.unlink()
    log.info("quantized %s -> %s (%d nodes kept float32)", name, target.name, len(keep))
    return target.name
