import warnings

import pytest

from medclf.config import compose
from medclf.training import hardware
from medclf.training.run import _device_flags


def _flags(monkeypatch: pytest.MonkeyPatch, has_bf16: bool, *overrides: str):
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: has_bf16)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cfg = compose(["data.path=x", *overrides])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flags = _device_flags(cfg)
    return flags, [str(w.message) for w in caught]


def test_bf16_and_channels_last_run_on_a_cpu_that_has_bf16(monkeypatch: pytest.MonkeyPatch):
    flags, said = _flags(
        monkeypatch, True, "train.precision=bf16-mixed", "train.channels_last=true"
    )
    assert flags == ("bf16-mixed", True, False) and said == []


def test_bf16_without_cpu_support_and_gpu_only_flags_fall_back_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
):
    flags, said = _flags(
        monkeypatch,
        False,
        "train.precision=bf16-mixed",
        "train.channels_last=true",
        "train.compile=true",
    )
    assert flags == ("32", True, False)
    (message,) = said
    assert "train.precision=bf16-mixed" in message and "train.compile=true" in message
    assert "32-bit" in message
    flags, said = _flags(monkeypatch, True, "train.precision=16-mixed")
    assert flags == ("32", False, False) and "train.precision=16-mixed" in said[0]


@pytest.mark.parametrize(
    ("helpers", "expected"),
    [
        ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": True}, True),
        ({"_is_avx512_bf16_supported": True}, True),
        ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": False}, False),
        ({}, False),  # a torch without the private helpers: 32-bit, the safe answer
    ],
)
def test_bf16_is_native_when_either_helper_says_so(monkeypatch, helpers, expected):
    import types

    monkeypatch.setattr(
        "torch.cpu", types.SimpleNamespace(**{k: (lambda v=v: v) for k, v in helpers.items()})
    )
    hardware.cpu_has_bf16.cache_clear()
    try:
        assert hardware.cpu_has_bf16() is expected
    finally:
        hardware.cpu_has_bf16.cache_clear()
