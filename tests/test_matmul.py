"""The float32 products through oneDNN (seq2seq.kernels.matmul) equal torch's, alone and inside
the hand-written loops and loss; the choice is read from SEQ2SEQ_FP32_MATMUL; the private
operators are used only after a capability check, and the public fallbacks give the same."""

import os
from collections.abc import Iterator

import pytest
import torch

from seq2seq.kernels import accelerate, matmul
from seq2seq.kernels.input_feeding import Weights, input_feeding_gru
from seq2seq.kernels.loss import projected_cross_entropy
from seq2seq.kernels.recurrent import CPUAutocastRecurrent
from seq2seq.models.cells import make_recurrent
from seq2seq.runtime import ONEDNN_CACHES, set_threads


@pytest.fixture
def choice(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Lets a test set SEQ2SEQ_FP32_MATMUL; the cached choice is re-read before and after."""
    matmul.onednn_float32.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    matmul.onednn_float32.cache_clear()


needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


@needs_onednn
def test_products_equal_torch_for_dense_transposed_and_sliced_operands(choice: pytest.MonkeyPatch) -> None:
    choice.setenv("SEQ2SEQ_FP32_MATMUL", "onednn")
    assert matmul.onednn_float32()
    torch.manual_seed(0)
    x, wide, b = torch.randn(6, 9), torch.randn(10, 13), torch.randn(10)
    weight = wide[:, 2:11]  # a slice with gaps between rows, as the decoder's W_if
    for w in (weight, weight.contiguous(), weight.t().contiguous().t()):
        torch.testing.assert_close(matmul.linear(x, w, b), x @ w.t() + b)
        torch.testing.assert_close(matmul.linear(x, w), x @ w.t())
    other = torch.randn(6, 3, 10)[:, 1]  # a strided step of a (N, T, out) tensor
    torch.testing.assert_close(matmul.linear_add(x, weight, other), other + x @ weight.t())
    a = torch.randn(9, 6)
    torch.testing.assert_close(matmul.mm(a.t(), weight.t()), a.t() @ weight.t())
    torch.testing.assert_close(matmul.mm(x[:0], weight.t()), x[:0] @ weight.t())
    h, w3, b3 = torch.randn(2, 4, 5), torch.randn(2, 5, 7), torch.randn(2, 1, 7)
    torch.testing.assert_close(matmul.baddbmm(b3, h, w3), torch.baddbmm(b3, h, w3))
    torch.testing.assert_close(matmul.bmm(h, w3), torch.bmm(h, w3))


@needs_onednn
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_weights_give_the_products_of_plain_ones(choice: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    choice.setenv("SEQ2SEQ_FP32_MATMUL", "onednn")
    torch.manual_seed(0)
    x, wide, b, other = torch.randn(5, 9), torch.randn(10, 13), torch.randn(10), torch.randn(5, 3, 10)[:, 1]
    weight = wide[:, 2:11]
    packed = matmul.pack(weight.to(dtype))
    if not matmul.is_packed(packed):
        pytest.skip(f"oneDNN does not pack {dtype} here")
    tolerance = {} if dtype == torch.float32 else {"atol": 0.1, "rtol": 0.05}
    x, b, other = x.to(dtype), b.to(dtype), other.to(dtype)
    for rows in (1, 5, 70):  # fewer and more rows than the layout was chosen for
        xs = x.repeat(14, 1)[:rows]
        want = (xs.double() @ weight.to(dtype).double().t()).to(dtype)
        torch.testing.assert_close(matmul.linear(xs, packed, b).float(), (want + b).float(), **tolerance)
        torch.testing.assert_close(matmul.linear(xs, packed).float(), want.float(), **tolerance)
    want = x.double() @ weight.to(dtype).double().t() + other.double()
    torch.testing.assert_close(matmul.linear_add(x, packed, other).float(), want.float(), **tolerance)
    assert matmul.pack(weight.double()) is weight.double() or not matmul.is_packed(matmul.pack(weight.double()))


def test_products_fall_back_to_torch_where_autograd_needs_them(choice: pytest.MonkeyPatch) -> None:
    choice.setenv("SEQ2SEQ_FP32_MATMUL", "onednn")
    x, w = torch.randn(3, 4, requires_grad=True), torch.randn(5, 4)
    matmul.linear(x, w).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, w.sum(0).expand(3, 4))
    x64 = torch.randn(3, 4, dtype=torch.float64)  # oneDNN has no float64: torch's product
    torch.testing.assert_close(matmul.mm(x64, x64.t()), x64 @ x64.t())


def test_an_unknown_choice_is_refused_naming_the_variable(choice: pytest.MonkeyPatch) -> None:
    choice.setenv("SEQ2SEQ_FP32_MATMUL", "mkl")
    with pytest.raises(ValueError, match="SEQ2SEQ_FP32_MATMUL='mkl': expected one of onednn, torch"):
        matmul.onednn_float32()


def _train_paths() -> list[torch.Tensor]:
    """Outputs and gradients, in float32, of the GRU loop, the decoder loop and the loss."""
    torch.manual_seed(0)
    rnn = accelerate(make_recurrent("gru", 8, 16, 1, True))
    assert isinstance(rnn, CPUAutocastRecurrent)
    x, lengths = torch.randn(3, 6, 8, requires_grad=True), torch.tensor([6, 2, 4])
    out, (final,) = rnn.gru_forward(x, None, lengths)
    enc_grads = torch.autograd.grad(out.square().sum() + final.sum(), [x, *rnn.parameters()])

    n, s, t, h, o, a, c = 3, 5, 4, 12, 9, 7, 10

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, requires_grad=True)

    inputs = [leaf(n, t, 3 * h), leaf(n, h), leaf(n, o), leaf(n, s, a), leaf(n, s, c)]
    weights = [leaf(3 * h, o), leaf(3 * h, h), leaf(3 * h), leaf(a + o, h), leaf(a), leaf(o, c)]
    mask = torch.ones(n, s, dtype=torch.bool)
    mask[1, 3:] = False
    features, last, attention = input_feeding_gru(*inputs, mask, Weights(*weights))
    dec_grads = torch.autograd.grad((features * torch.linspace(-1, 1, o)).sum() + last.sum(), inputs + weights)

    feats, proj, bias = leaf(11, 9), leaf(20, 9), leaf(20)
    loss = projected_cross_entropy(feats, proj, bias, torch.randint(0, 20, (11,)), label_smoothing=0.1, chunk=4)
    loss_grads = torch.autograd.grad(loss, [feats, proj, bias])
    return [out, final, *enc_grads, features, last, attention, *dec_grads, loss, *loss_grads]


@needs_onednn
def test_loops_and_loss_give_the_same_results_through_onednn_and_torch(choice: pytest.MonkeyPatch) -> None:
    results = {}
    for name in ("onednn", "torch"):
        choice.setenv("SEQ2SEQ_FP32_MATMUL", name)
        matmul.onednn_float32.cache_clear()
        assert matmul.onednn_float32() == (name == "onednn")
        results[name] = _train_paths()
    for a, b in zip(results["onednn"], results["torch"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)  # float32 sums in another order


def test_set_threads_caps_both_onednn_caches_unless_the_environment_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "64")
    set_threads(torch.get_num_threads())
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == ONEDNN_CACHES["ONEDNN_PRIMITIVE_CACHE_CAPACITY"]
    assert os.environ["LRU_CACHE_CAPACITY"] == "64"


def test_a_failing_onednn_operator_falls_back_to_torch(choice: pytest.MonkeyPatch) -> None:
    """The capability check: an operator that raises (or is missing) is not used, and the
    products are torch's."""
    choice.setenv("SEQ2SEQ_FP32_MATMUL", "onednn")

    def broken(*args: object) -> torch.Tensor:
        raise RuntimeError("no such kernel")

    choice.setattr(matmul, "_linear_onednn", broken)
    assert not matmul.onednn_float32()
    x, w, b = torch.randn(3, 4), torch.randn(5, 4), torch.randn(5)
    torch.testing.assert_close(matmul.linear(x, w, b), torch.nn.functional.linear(x, w, b))
    other = torch.randn(3, 5)
    torch.testing.assert_close(matmul.linear_add(x, w, other), other + x @ w.t())


def test_onednn_operators_that_disagree_with_torch_are_not_used(choice: pytest.MonkeyPatch) -> None:
    choice.setenv("SEQ2SEQ_FP32_MATMUL", "onednn")
    choice.setattr(matmul, "_linear_onednn", lambda x, w, b: torch.nn.functional.linear(x, w, b) + 1)
    assert not matmul.onednn_float32()


def test_sigmoid_backward_checks_the_private_operator_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    grad, s = torch.randn(4, 6), torch.rand(4, 6)
    expected = grad * s * (1 - s)

    def broken(*args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("unsupported")

    assert not matmul.sigmoid_backward_works(None)
    assert not matmul.sigmoid_backward_works(broken)
    assert not matmul.sigmoid_backward_works(lambda g, s, grad_input: grad_input.fill_(0))
    for usable in (True, False):
        monkeypatch.setattr(matmul, "_sigmoid_backward_into", lambda usable=usable: usable)
        torch.testing.assert_close(matmul.sigmoid_backward(grad, s, torch.empty_like(s)), expected)
        torch.testing.assert_close(matmul.sigmoid_backward(grad, s), expected)
    assert matmul.sigmoid_backward_works(getattr(torch.ops.aten.sigmoid_backward, "grad_input", None))
