"""The input-feeding GRU decoder with additive attention as one fused loop:
:class:`FusedLuongDecoder` stands in for :class:`~seq2seq.models.attention_decoders.LuongDecoder`
where :func:`~seq2seq.config.fused_decoder` holds (input feeding, one ``gru`` layer, ``mlp``
attention, no residual or variational dropout: the reference model of OpenNMT-py and Joey NMT)
and runs its teacher-forced forward through :func:`~seq2seq.kernels.input_feeding.input_feeding_gru`.

What the loop needs and the plain decoder does not have stays here: the attention keys
doubled for the loop's sigmoid form of the tanh, the GRU's parameters taken out of
``torch.nn.GRU`` as views, the weights cast once per batch for search, and the choice of
eager or compiled step functions.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from seq2seq.config import fused_decoder
from seq2seq.kernels.casts import CastCache, product_dtype
from seq2seq.kernels.dropout import fast_dropout_mask
from seq2seq.kernels.input_feeding import EAGER, Steps, Weights, compiled_steps, input_feeding_gru
from seq2seq.kernels.kernel import Kernel
from seq2seq.kernels.matmul import linear
from seq2seq.models.attention import AdditiveAttention
from seq2seq.models.attention_decoders import LuongDecoder
from seq2seq.models.cells import State, TorchRecurrent
from seq2seq.models.decoders import DecoderOutput
from seq2seq.models.encoder import Encoded


class FusedLuongDecoder(Kernel, LuongDecoder):
    """:class:`~seq2seq.models.attention_decoders.LuongDecoder` through the fused loop (see
    the module docstring); ``setup(compile)`` picks eager (``none``) or compiled step functions."""

    plain = LuongDecoder
    steps: Steps
    _cast_cache: CastCache

    @classmethod
    def supports(cls, module: nn.Module) -> bool:
        if not super().supports(module):
            return False
        decoder = cast(LuongDecoder, module)
        return fused_decoder(
            "luong",
            decoder.cell,
            decoder.num_layers,
            decoder.attention_type,
            decoder.input_feeding,
            decoder.residual,
            decoder.variational,
        )

    def setup(self, compile: str, frozen: bool) -> None:
        assert isinstance(self.rnn, TorchRecurrent) and self.rnn.rnn.mode == "GRU" and self.rnn.num_layers == 1
        assert isinstance(self.attention, AdditiveAttention)
        # Compiled steps trace their products as custom operators over plain weights: no packing.
        self._cast_cache = CastCache(frozen and compile == "none")
        self.steps = EAGER if compile == "none" else compiled_steps(compile)

    def prepare(self, encoded: Encoded) -> Encoded:
        self._cast_cache.clear()  # a new batch: the weights may have changed since the last one (unless frozen)
        keys = 2 * self.attention.keys(encoded.outputs)  # the loop's sigmoid form of the tanh
        if not torch.is_grad_enabled() and keys.dtype != encoded.outputs.dtype:
            # Decoding under autocast: cast the annotations once here, not at every step.
            return encoded._replace(outputs=encoded.outputs.to(keys.dtype), keys=keys)
        return encoded._replace(keys=keys)

    def forward(self, prev: Tensor, state: State, encoded: Encoded) -> DecoderOutput:
        assert encoded.keys is not None, "call decoder.prepare(encoded) before decoding"
        emb = self.dropout(self.embedding(prev))
        e, c = emb.size(-1), encoded.outputs.size(-1)
        if torch.is_grad_enabled():
            w_ie, b_ih, weights = self._weights(e, c)
        else:
            w_ie, b_ih, weights = self._cast_weights(e, c, emb.device)
        h0, feed = state
        xe = linear(emb.to(w_ie.dtype), w_ie, b_ih)  # the inputs of all steps at once
        p = self.dropout.p
        drop = None
        if self.training and p > 0:
            drop = fast_dropout_mask((emb.size(0), emb.size(1), self.output_size), p, torch.float32, emb.device)
        features, h, att = input_feeding_gru(
            xe, h0[:, 0], feed, encoded.keys, encoded.outputs, encoded.mask, weights, drop, self.steps
        )
        return DecoderOutput(features, (h[:, None], features[:, -1]), att)

    def _weights(self, e: int, c: int) -> tuple[Tensor, Tensor, Weights]:
        """The GRU's embedding-input weights and bias, and the loop's :class:`Weights`, as
        views of the parameters (e: embedding size, c: annotation size)."""
        gru = cast(TorchRecurrent, self.rnn).rnn  # torch.nn.GRU, one layer
        w_ih, w_hh = cast(Tensor, gru.weight_ih_l0), cast(Tensor, gru.weight_hh_l0)
        b_ih, b_hh = cast(Tensor, gru.bias_ih_l0), cast(Tensor, gru.bias_hh_l0)
        attention = cast(AdditiveAttention, self.attention)
        combine = self.combine.weight
        weights = Weights(
            w_if=w_ih[:, e:],
            w_hh=w_hh,
            b_hh=b_hh,
            w_qch=torch.cat([attention.query.weight, combine[:, c:]]),
            v=attention.v.weight[0],
            w_cc=combine[:, :c],
        )
        return w_ih[:, :e], b_ih, weights

    def _cast_weights(self, e: int, c: int, device: torch.device) -> tuple[Tensor, Tensor, Weights]:
        """:meth:`_weights` in the autocast dtype, contiguous, made once and reused for the
        steps of one batch (search calls the decoder once per step; :meth:`prepare` starts a
        batch and drops the casts), or of every batch of a frozen model, whose matrices are
        also packed for oneDNN (:class:`~seq2seq.kernels.casts.CastCache`)."""
        dtype = product_dtype(device.type, self.combine.weight.dtype)

        def make() -> list[Tensor]:
            w_ie, b_ih, weights = self._weights(e, c)
            return [w_ie, b_ih, *weights]

        # make()'s matrices: w_ie, w_if, w_hh, w_qch, w_cc (the rest are biases and v)
        w_ie, b_ih, *weights = self._cast_cache.get(dtype, self.parameters(), make, pack=(0, 2, 3, 5, 7))
        return w_ie, b_ih, Weights(*weights)
