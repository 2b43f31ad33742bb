"""Codec: numpy / torch ↔ wire Tensor (dtype + shape + little-endian row-major bytes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from advantage_client._codec import decode_numpy, decode_torch, encode, to_wire
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb

NUMPY_DTYPES = [
    (np.float32, pb.DTYPE_FLOAT32, 4),
    (np.float64, pb.DTYPE_FLOAT64, 8),
    (np.bool_, pb.DTYPE_BOOL, 1),
    (np.int64, pb.DTYPE_INT64, 8),
    (np.int32, pb.DTYPE_INT32, 4),
    (np.float16, pb.DTYPE_FLOAT16, 2),
    (np.uint8, pb.DTYPE_UINT8, 1),
]
TORCH_DTYPES = [
    (torch.float32, pb.DTYPE_FLOAT32),
    (torch.float64, pb.DTYPE_FLOAT64),
    (torch.bool, pb.DTYPE_BOOL),
    (torch.int64, pb.DTYPE_INT64),
    (torch.int32, pb.DTYPE_INT32),
    (torch.float16, pb.DTYPE_FLOAT16),
    (torch.bfloat16, pb.DTYPE_BFLOAT16),
    (torch.uint8, pb.DTYPE_UINT8),
]


def _sample(dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.normal(size=shape) * 50).astype(dtype)


def test_worked_example_of_the_contract() -> None:
    t = encode(np.array([[1, 2], [3, 4]], dtype=np.float32))
    assert t.dtype == pb.DTYPE_FLOAT32
    assert list(t.shape) == [2, 2]
    assert t.raw_data == bytes.fromhex("0000803f 00000040 00004040 00008040")
    np.testing.assert_array_equal(decode_numpy(t), [[1, 2], [3, 4]])


@pytest.mark.parametrize(("dtype", "wire", "itemsize"), NUMPY_DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (5,), (2, 3, 4), (3, 0, 2)])
def test_numpy_round_trip(dtype: type, wire: int, itemsize: int, shape: tuple[int, ...]) -> None:
    x = _sample(dtype, shape)
    t = encode(x)
    assert t.dtype == wire
    assert list(t.shape) == list(shape)
    assert len(t.raw_data) == int(np.prod(shape)) * itemsize
    back = decode_numpy(t)
    assert back.dtype == np.dtype(dtype)
    assert back.shape == shape
    np.testing.assert_array_equal(back, x)


def test_numpy_decode_is_a_read_only_view() -> None:
    t = encode(np.arange(6, dtype=np.float32).reshape(2, 3))
    back = decode_numpy(t)
    assert not back.flags.writeable
    assert back.flags.c_contiguous
    with pytest.raises(ValueError):
        back[0, 0] = 1.0


def test_bytes_are_little_endian_and_row_major_whatever_the_input_layout() -> None:
    x = np.arange(6, dtype=">i4").reshape(2, 3)  # big-endian
    t = encode(x.T)  # and not C-contiguous
    assert t.dtype == pb.DTYPE_INT32
    assert list(t.shape) == [3, 2]
    assert t.raw_data == np.array([[0, 3], [1, 4], [2, 5]], dtype="<i4").tobytes()
    assert t.raw_data[:8] == bytes([0, 0, 0, 0, 3, 0, 0, 0])


def test_bool_is_one_byte_per_element() -> None:
    t = encode(np.array([True, False, True]))
    assert t.dtype == pb.DTYPE_BOOL
    assert t.raw_data == b"\x01\x00\x01"


def test_python_values_are_accepted() -> None:
    assert encode([[1.5, 2.5]]).dtype == pb.DTYPE_FLOAT64
    assert encode([1, 2]).dtype == pb.DTYPE_INT64
    t = encode(3.0)
    assert list(t.shape) == [] and len(t.raw_data) == 8


@pytest.mark.parametrize(("dtype", "wire"), TORCH_DTYPES)
def test_torch_round_trip(dtype: torch.dtype, wire: int) -> None:
    x = (torch.randn(3, 4, generator=torch.Generator().manual_seed(0)) * 50).to(dtype)
    t = encode(x)
    assert t.dtype == wire
    assert list(t.shape) == [3, 4]
    assert len(t.raw_data) == 12 * x.element_size()
    back = decode_torch(t)
    assert back.dtype == dtype
    assert torch.equal(back, x)
    back[0, 0] = back[0, 1]  # writable: decode_torch copies


def test_torch_and_numpy_encode_to_the_same_bytes() -> None:
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4).T  # non-contiguous
    assert encode(x) == encode(x.numpy())


def test_torch_requires_grad_and_views_are_encoded() -> None:
    x = torch.ones(2, 3, requires_grad=True) * 2
    assert decode_numpy(encode(x)).tolist() == [[2.0] * 3] * 2
    y = torch.arange(4.0).neg()  # lazily negated view
    assert decode_numpy(encode(y)).tolist() == [0.0, -1.0, -2.0, -3.0]


def test_bfloat16_decodes_to_float32_for_numpy() -> None:
    x = torch.tensor([1.0, -2.5, 3.140625], dtype=torch.bfloat16)
    t = encode(x)
    assert t.dtype == pb.DTYPE_BFLOAT16
    assert len(t.raw_data) == 6
    assert t.raw_data[:2] == bytes([0x80, 0x3F])  # upper half of float32 1.0
    back = decode_numpy(t)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, x.float().numpy())


def test_decode_torch_moves_to_the_requested_device() -> None:
    back = decode_torch(encode(np.ones(2, np.float32)), device="cpu")
    assert back.device == torch.device("cpu")


@pytest.mark.parametrize(
    "x", [np.ones(2, np.int8), np.ones(2, np.uint16), np.ones(2, np.complex64), np.array(["a"])]
)
def test_unsupported_numpy_dtypes_are_refused(x: np.ndarray) -> None:
    with pytest.raises(TypeError, match=r"reward: dtype .* is not supported"):
        encode(x, name="reward")


def test_unsupported_torch_dtype_is_refused() -> None:
    with pytest.raises(TypeError, match="not supported"):
        encode(torch.ones(2, dtype=torch.int16), name="x")


@pytest.mark.parametrize("nbytes", [15, 17, 0])
def test_decode_checks_the_byte_length(nbytes: int) -> None:
    t = pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2, 2], raw_data=b"\0" * nbytes)
    with pytest.raises(ValueError, match=r"advantage: raw_data holds .* expected 16"):
        decode_numpy(t, name="advantage")
    with pytest.raises(ValueError, match="expected 16"):
        decode_torch(t, name="advantage")


def test_decode_refuses_unspecified_dtype_and_negative_shape() -> None:
    with pytest.raises(ValueError, match="dtype"):
        decode_numpy(pb.Tensor(shape=[1], raw_data=b"\0" * 4))
    with pytest.raises(ValueError, match="negative"):
        decode_numpy(pb.Tensor(dtype=pb.DTYPE_UINT8, shape=[-1], raw_data=b""))


def test_to_wire_of_a_contiguous_little_endian_array_does_not_copy() -> None:
    x = np.zeros((4, 3), np.float32)
    assert np.shares_memory(to_wire(x).array, x)
