"""Reading weight files without trusting them: safetensors only, checked to be complete; pickles refused.

Pickle formats (`pytorch_model.bin`, `.pt`, `.ckpt`...) run arbitrary code when loaded, and mindtorch's
`torch.load` ignores `weights_only`, so nothing here unpickles; backbones.load_backbone does so only when
the user passes allow_pickle.
"""

import json
import os
import struct

import numpy as np
from safetensors.numpy import load_file

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class WeightsFileError(ValueError):
    """A weights file that is missing, truncated or not safetensors; the message names the file."""


def check_safetensors(path: str) -> None:
    """Raise WeightsFileError unless `path` is a complete safetensors file: an 8-byte header length, a
    JSON header, and exactly the bytes the header's tensors claim (a copy or write cut short fails here)."""
    if not os.path.isfile(path):
        raise WeightsFileError(f"{path}: file not found")
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise WeightsFileError(f"{path}: truncated or not safetensors ({size} bytes, no header)")
        (header_length,) = struct.unpack("<Q", head)
        if 8 + header_length > size:
            raise WeightsFileError(f"{path}: truncated or not safetensors: the header claims {header_length} "
                                   f"bytes, the file has {size}")
        try:
            header = json.loads(handle.read(header_length))
            data_end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"),
                           default=0)
        except (ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError):
            raise WeightsFileError(f"{path}: not a safetensors file (unreadable header)") from None
    expected = 8 + header_length + data_end
    if size != expected:
        state = "truncated" if size < expected else "corrupt"
        raise WeightsFileError(f"{path}: {state}: {size} bytes, its header describes {expected} "
                               "(an interrupted copy or write?)")


def load_safetensors(path: str) -> dict:
    """name → numpy array, after `check_safetensors`; never unpickles anything."""
    check_safetensors(path)
    try:
        return load_file(path)
    except Exception as error:  # safetensors raises its own error type for inconsistent headers
        raise WeightsFileError(f"{path}: corrupt safetensors file: {error}") from None


FLOAT_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}  # bfloat16: the high half of a float32


def read_tensor(directory: str, name: str):
    """Tensor `name` as float32 from whichever *.safetensors file of `directory` holds it (a sharded checkpoint
    has several), or None. Reads the header and that tensor's bytes only; bfloat16 (what most Llama / Qwen2
    checkpoints hold, and numpy lacks) is widened exactly."""
    for file_name in sorted(f for f in os.listdir(directory) if f.endswith(".safetensors")):
        path = os.path.join(directory, file_name)
        check_safetensors(path)
        with open(path, "rb") as handle:
            (header_length,) = struct.unpack("<Q", handle.read(8))
            entry = json.loads(handle.read(header_length)).get(name)
            if entry is None:
                continue
            if entry["dtype"] not in FLOAT_DTYPES:
                raise WeightsFileError(f"{path}: {name} is {entry['dtype']}, not a float tensor")
            start, end = entry["data_offsets"]
            handle.seek(8 + header_length + start)
            values = np.frombuffer(handle.read(end - start), FLOAT_DTYPES[entry["dtype"]])
        if entry["dtype"] == "BF16":
            values = (values.astype(np.uint32) << 16).view(np.float32)
        return values.astype(np.float32).reshape(entry["shape"])
    return None


def pickle_files(directory: str) -> list:
    """Files in `directory` whose format is a pickle, sorted."""
    if not os.path.isdir(directory):
        return []
    return sorted(name for name in os.listdir(directory) if name.endswith(PICKLE_SUFFIXES))
