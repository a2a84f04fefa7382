"""Models: the one place where config becomes modules (:func:`build_model`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from seq2seq.config import DecoderConfig, EncoderConfig, ModelConfig
from seq2seq.models.bridges import BRIDGES
from seq2seq.models.decoders import ContextDecoder
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
    decoder = ContextDecoder(
        tgt_vocab_size,
        dec.embedding_dim,
        dec.hidden_size,
        context_size=encoder.output_size,
        num_layers=dec.num_layers,
        cell=dec.cell,
        dropout=dec.dropout,
        output_layer=dec.output_layer,
        output_size=dec.output_size,
        padding_idx=padding_idx,
        **cell_options(dec),
    )
    rnn = decoder.rnn
    bridge = BRIDGES[config.bridge](
        encoder.output_size, dec.hidden_size, dec.num_layers, rnn.num_states, state_sizes=rnn.state_sizes
    )
    generator = nn.Linear(dec.output_size, tgt_vocab_size)
    if dec.tie_embeddings:
        generator.weight = decoder.embedding.weight  # Press & Wolf (2017)
    return Seq2Seq(encoder, bridge, decoder, generator)


def cell_options(config: EncoderConfig | DecoderConfig) -> dict[str, Any]:
    """The recurrent-stack options of an encoder or decoder config, as make_recurrent takes them."""
    return {
        "proj_size": config.proj_size,
        "residual": config.residual,
        "forget_bias": config.forget_bias,
        "recurrent_init": config.recurrent_init,
        "variational": config.dropout_type == "variational",
    }
