"""Training pieces: learning-rate schedules, device and precision choices, a bf16 step."""

import math

import pytest
import torch

from seq2seq.config import DecoderConfig, EncoderConfig, ModelConfig, SearchConfig, TrainingConfig
from seq2seq.data.batching import Batch
from seq2seq.errors import DeviceError
from seq2seq.models import build_model
from seq2seq.runtime import autocast, check_precision, pick_device, resolve_precision
from seq2seq.train.loop import batch_loss
from seq2seq.train.schedule import Schedule


def test_warmup_then_constant() -> None:
    s = Schedule(1e-3, "constant", warmup_steps=10)
    assert s.lr(1) == pytest.approx(1e-4)
    assert s.lr(10) == s.lr(500) == pytest.approx(1e-3)


def test_inverse_sqrt_decays_after_warmup() -> None:
    s = Schedule(1e-3, "inverse_sqrt", warmup_steps=100)
    assert s.lr(100) == pytest.approx(1e-3)
    assert s.lr(400) == pytest.approx(5e-4)


def test_plateau_decays_after_patience_and_checkpoints() -> None:
    s = Schedule(1e-3, "plateau", factor=0.5, patience=1, min_lr=1e-4)
    for loss in (3.0, 2.0, 2.5, 2.6):  # two validations without improvement > patience 1
        s.observe(loss)
    assert s.lr(1000) == pytest.approx(5e-4)
    restored = Schedule(1e-3, "plateau", factor=0.5, patience=1, min_lr=1e-4)
    restored.load_state_dict(s.state_dict())
    assert restored.lr(1000) == s.lr(1000)
    for _ in range(20):
        s.observe(9.0)
    assert s.lr(1000) == pytest.approx(1e-4)  # never below min_lr


def test_device_and_precision_choices() -> None:
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device("auto").type == "cpu"
        with pytest.raises(DeviceError, match="no CUDA device"):
            pick_device("cuda")
    with pytest.raises(DeviceError, match="fp16 needs a CUDA device"):
        check_precision("fp16", torch.device("cpu"))
    check_precision("bf16", torch.device("cpu"))
    with pytest.raises(DeviceError, match="choose one of auto, fp32, bf16, fp16"):
        check_precision("fp8", torch.device("cpu"))


def test_auto_precision_is_bf16_only_on_gpus_that_have_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu) == "fp32"
    for explicit in ("fp32", "bf16", "fp16"):
        assert resolve_precision(explicit, cpu) == resolve_precision(explicit, cuda) == explicit
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_precision("auto", cuda) == "bf16"
    assert resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)  # e.g. a V100
    assert resolve_precision("auto", cuda) == "fp32"
    assert TrainingConfig().precision == SearchConfig().precision == "auto"


def test_bf16_autocast_step_on_cpu() -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        encoder=EncoderConfig(embedding_dim=8, hidden_size=8),
        decoder=DecoderConfig(embedding_dim=8, hidden_size=8, output_size=8),
    )
    model = build_model(config, 20, 20)
    src = torch.randint(4, 20, (3, 5))
    tgt = torch.randint(4, 20, (3, 4))
    batch = Batch(src, torch.tensor([5, 4, 2]), tgt, tgt, num_tokens=0)
    with autocast("bf16", torch.device("cpu"))():
        loss, n = batch_loss(model, batch, pad=0, label_smoothing=0.1)
    assert loss.dtype == torch.float32 and n == 12 and math.isfinite(loss.detach().item())
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
