"""The op seam's backend choice: old or missing triton is named, never silently used."""
import pytest
import torch
import triton

from fastbert.encoder import ops


@pytest.fixture
def fresh_probe():
    ops.triton_problem.cache_clear()
    ops._warn_no_triton.cache_clear()
    yield
    ops.triton_problem.cache_clear()
    ops._warn_no_triton.cache_clear()


def test_triton_older_than_supported_is_refused_or_warned(monkeypatch, fresh_probe):
    monkeypatch.setattr(triton, "__version__", "3.5.1")
    with pytest.raises(ValueError, match=r"triton 3\.5\.1 is older than 3\.6"):
        ops.resolve_backend("triton", torch.device("cuda"))
    with pytest.warns(RuntimeWarning, match=r"PyTorch path on CUDA because triton 3\.5\.1 is older"):
        assert ops.resolve_backend(None, torch.device("cuda")) == "torch"
    assert ops.resolve_backend(None, torch.device("cpu")) == "torch"


def test_supported_triton_is_taken(fresh_probe):
    assert ops.triton_problem() is None
    assert ops.resolve_backend(None, torch.device("cuda")) == "triton"
    assert ops.resolve_backend("torch", torch.device("cuda")) == "torch"
    assert ops.resolve_backend(None, torch.device("cuda"), needs_grad=True) == "torch"  # auto: not before a GPU run
    # Asked for by name, Triton keeps autograd (backward kernels) and dropout (fused), unless the model lacks a
    # backward.
    assert ops.resolve_backend("triton", torch.device("cuda"), needs_grad=True) == "triton"
    assert ops.resolve_backend("triton", torch.device("cuda"), needs_grad=True, grad_missing="MPNet") == "torch"
    assert ops.resolve_backend("triton", torch.device("cuda"), dropout=True) == "triton"  # dropout fused
    assert ops.resolve_backend("triton", torch.device("cuda"), dropout=True, needs_grad=True,
                               grad_missing="MPNet") == "torch"
    assert ops.resolve_backend(None, torch.device("cuda"), dropout=True) == "torch"  # auto: not before a GPU run
