"""The one dtype vocabulary: names used in manifests, JSON and messages, and torch dtypes.

The wire enum (`advantage.v1.DType`) is derived from the names in `service.wire.codec`
(`DTYPE_<NAME>`), so adding a dtype means one row here and one enum value in the proto.
"""

from __future__ import annotations

import torch

#: name → torch dtype, for every dtype a tensor may have on the wire or in a manifest.
TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
#: torch dtype → name.
DTYPE_NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in TORCH_DTYPES.items()}
#: The dtypes a computation runs in (rewards, values, log-probabilities, losses).
COMPUTE_DTYPES: dict[str, torch.dtype] = {
    name: TORCH_DTYPES[name] for name in ("float32", "float64")
}


def dtype_name(dtype: torch.dtype) -> str:
    """The vocabulary's name of a torch dtype ("float32"); torch's own name for others."""
    return DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))
