"""The plain model: ordinary PyTorch, each module its paper's equations, and
:func:`build_model`, the one place where config becomes modules. The fast paths that stand
in for some of these modules are in :mod:`seq2seq.kernels`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from seq2seq.config import DecoderConfig, EncoderConfig, ModelConfig
from seq2seq.models.attention_decoders import BahdanauDecoder, LuongDecoder
from seq2seq.models.bridges import BRIDGES
from seq2seq.models.decoders import ContextDecoder, Decoder
from seq2seq.models.encoder import Encoder
from seq2seq.models.seq2seq import Seq2Seq


def build_model(config: ModelConfig, src_vocab_size: int, tgt_vocab_size: int, padding_idx: int = 0) -> Seq2Seq:
    enc, dec = config.encoder, config.decoder
    encoder = Encoder(
        src_vocab_size,
        enc.embedding_dim,
        enc.hidden_size,
        num_layers=enc.num_layers,
        bidirectional=enc.bidirectional,
        cell=enc.cell,
        dropout=enc.dropout,
        padding_idx=padding_idx,
        **cell_options(enc),
    )
    decoder = DECODERS[dec.type](dec, tgt_vocab_size, encoder.output_size, padding_idx)
    rnn: Any = decoder.rnn
    bridge = BRIDGES[config.bridge](
        encoder.output_size, dec.hidden_size, dec.num_layers, rnn.num_states, state_sizes=rnn.state_sizes
    )
    generator = nn.Linear(dec.output_size, tgt_vocab_size)
    if dec.tie_embeddings:
        generator.weight = decoder.embedding.weight  # Press & Wolf (2017)
    return Seq2Seq(encoder, bridge, decoder, generator)


def _common(dec: DecoderConfig, vocab_size: int, context_size: int, padding_idx: int) -> dict[str, Any]:
    """The arguments every decoder takes."""
    return {
        "vocab_size": vocab_size,
        "embedding_dim": dec.embedding_dim,
        "hidden_size": dec.hidden_size,
        "context_size": context_size,
        "num_layers": dec.num_layers,
        "cell": dec.cell,
        "dropout": dec.dropout,
        "padding_idx": padding_idx,
        **cell_options(dec),
    }


def _context(dec: DecoderConfig, vocab_size: int, context_size: int, padding_idx: int) -> Decoder:
    common = _common(dec, vocab_size, context_size, padding_idx)
    return ContextDecoder(**common, output_layer=dec.output_layer, output_size=dec.output_size)


def _bahdanau(dec: DecoderConfig, vocab_size: int, context_size: int, padding_idx: int) -> Decoder:
    return BahdanauDecoder(
        **_common(dec, vocab_size, context_size, padding_idx),
        attention=dec.attention,
        attention_size=dec.attention_size,
        output_layer=dec.output_layer,
        output_size=dec.output_size,
    )


def _luong(dec: DecoderConfig, vocab_size: int, context_size: int, padding_idx: int) -> Decoder:
    return LuongDecoder(
        **_common(dec, vocab_size, context_size, padding_idx),
        attention=dec.attention,
        attention_size=dec.attention_size,
        input_feeding=dec.input_feeding,
        output_size=dec.output_size,
    )


# model.decoder.type -> builder(decoder config, target vocabulary size, encoder output size, padding id)
DECODERS: dict[str, Callable[[DecoderConfig, int, int, int], Decoder]] = {
    "context": _context,
    "bahdanau": _bahdanau,
    "luong": _luong,
}


def cell_options(config: EncoderConfig | DecoderConfig) -> dict[str, Any]:
    """The recurrent-stack options of an encoder or decoder config, as make_recurrent takes them."""
    return {
        "proj_size": config.proj_size,
        "residual": config.residual,
        "forget_bias": config.forget_bias,
        "recurrent_init": config.recurrent_init,
        "variational": config.dropout_type == "variational",
    }
