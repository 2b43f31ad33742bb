"""service.wire.codec: the byte-level encoding documented in proto/README.md."""

from __future__ import annotations

import pytest
import torch

from service.errors import InvalidArgument
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.wire.codec import decode_tensor, encode_tensor


def test_worked_example_from_the_reference_page() -> None:
    message = encode_tensor(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert message.raw_data.hex(" ") == "00 00 80 3f 00 00 00 40 00 00 40 40 00 00 80 40"
    wire = message.SerializeToString()
    assert wire.hex(" ") == "08 01 12 02 02 02 1a 10 " + message.raw_data.hex(" ")
    assert len(wire) == 24
    done = encode_tensor(torch.tensor([[False, True]]))
    assert (done.dtype, list(done.shape), done.raw_data) == (pb.DTYPE_BOOL, [1, 2], b"\x00\x01")


@pytest.mark.parametrize(
    "value",
    [
        torch.randn(3, 4),
        torch.randn(2, 3, dtype=torch.float64),
        torch.tensor(True),
        torch.randint(-5, 5, (7,)),
        torch.randint(0, 255, (2, 2), dtype=torch.uint8),
        torch.randn(4, dtype=torch.bfloat16),
        torch.randn(4, dtype=torch.float16),
        torch.zeros(0, 3),
    ],
)
def test_round_trip(value: torch.Tensor) -> None:
    decoded = decode_tensor(encode_tensor(value), "x")
    assert decoded.dtype == value.dtype and decoded.shape == value.shape
    assert torch.equal(decoded, value)


def test_noncontiguous_input_is_encoded_row_major() -> None:
    value = torch.arange(6.0).view(2, 3).t()
    assert torch.equal(decode_tensor(encode_tensor(value), "x"), value)


@pytest.mark.parametrize(
    ("message", "words"),
    [
        (pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2], raw_data=b"\0" * 7), ["x", "7 bytes", "8"]),
        (pb.Tensor(shape=[1], raw_data=b"\0" * 4), ["x", "dtype"]),
        (pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[-1], raw_data=b""), ["x", "negative"]),
        (pb.Tensor(dtype=pb.DTYPE_BOOL, shape=[2], raw_data=b"\x00\x07"), ["x", "0 and 1"]),
    ],
)
def test_malformed_tensors_are_refused(message: pb.Tensor, words: list[str]) -> None:
    with pytest.raises(InvalidArgument) as error:
        decode_tensor(message, "x")
    for word in words:
        assert word in error.value.message
