"""Reading weight files without trusting them: safetensors only, checked to be complete; pickles refused.

Pickle formats (`pytorch_model.bin`, `.pt`, `.ckpt`...) run arbitrary code when loaded, and mindtorch's
`torch.load` ignores `weights_only`, so nothing here unpickles; backbones.load_backbone does so only when
the user passes allow_pickle.
"""

import json
import os
import struct

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


def pickle_files(directory: str) -> list:
    """Files in `directory` whose format is a pickle, sorted."""
    if not os.path.isdir(directory):
        return []
    return sorted(name for name in os.listdir(directory) if name.endswith(PICKLE_SUFFIXES))
