"""Data parallelism on MindSpore's own collective engine, for runs launched by `msrun`.

`msrun --worker_num N python -m ms_ptuning.run ...` starts N workers plus one scheduler process, each with
MS_ROLE set. Every worker holds the whole model; a global batch (per_device_train_batch_size × N examples)
is cut into N contiguous shards, each worker computes the gradient of its shard, and one all-reduce of
the shard-size-weighted gradients gives every worker the gradient of the whole batch, so all workers take
the same optimizer step and stay identical. Only rank 0 writes files.

Imports MindSpore only (not mindnlp): msrun's scheduler runs the same command and should not pay for
loading the model stack before it turns into the scheduler.
"""

import os
import sys

import numpy as np
from mindspore import Tensor, ops

ROLE_VARIABLE = "MS_ROLE"  # set by msrun: MS_SCHED for the scheduler, MS_WORKER for the workers


def launched_by_msrun() -> bool:
    return os.environ.get(ROLE_VARIABLE) in ("MS_SCHED", "MS_WORKER")


def serve_if_scheduler() -> None:
    """In msrun's scheduler process: run the scheduler until the workers are done, then exit. Elsewhere:
    return at once. Call it before anything heavy is imported or loaded."""
    if os.environ.get(ROLE_VARIABLE) != "MS_SCHED":
        return
    from mindspore.communication import init

    init()  # serves the cluster; returns only if the cluster shuts down without ending this process
    sys.exit(0)


class DataParallel:
    """The collective operations training needs; with one process each is the identity (no MindSpore
    communication is initialised), so the single-process path is unchanged."""

    def __init__(self, rank: int = 0, world_size: int = 1):
        self.rank, self.world_size = rank, world_size
        self._all_reduce = ops.AllReduce() if world_size > 1 else None

    @classmethod
    def from_environment(cls) -> "DataParallel":
        """Join the msrun cluster when launched by msrun (the device target must be set already)."""
        if not launched_by_msrun():
            return cls()
        from mindspore.communication import get_group_size, get_rank, init

        init()
        return cls(get_rank(), get_group_size())

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, global_batch: np.ndarray, per_device: int) -> np.ndarray:
        """This worker's contiguous slice of a global batch (empty when a short last batch runs out)."""
        return global_batch[self.rank * per_device:(self.rank + 1) * per_device]

    def row_range(self, num_rows: int) -> tuple:
        """[start, stop) of this worker's contiguous share of `num_rows` rows (evaluation)."""
        share = -(-num_rows // self.world_size)
        return min(num_rows, self.rank * share), min(num_rows, (self.rank + 1) * share)

    def sum_tensors(self, tensors: list) -> list:
        """Element-wise sum over workers of a list of float32 tensors, in one all-reduce."""
        if self.world_size == 1:
            return tensors
        return unflatten(self._all_reduce(flatten(tensors)), tensors)

    def sum_arrays(self, arrays: list) -> list:
        """`sum_tensors` for numpy arrays (evaluation outputs and losses); float32 on the wire."""
        if self.world_size == 1:
            return arrays
        summed = self.sum_tensors([Tensor(np.asarray(a, dtype=np.float32)) for a in arrays])
        return [s.asnumpy().astype(np.asarray(a).dtype) for s, a in zip(summed, arrays)]

    def max_over_workers(self, value: int) -> int:
        """The largest of every worker's `value` (e.g. the widest evaluation output before a gather)."""
        if self.world_size == 1:
            return value
        values = np.zeros(self.world_size, np.float32)
        values[self.rank] = value
        return int(self.sum_arrays([values])[0].max())

    def broadcast_from_main(self, tensors: list) -> list:
        """Rank 0's values of `tensors` on every worker (one flat broadcast)."""
        if self.world_size == 1:
            return tensors
        (flat,) = ops.Broadcast(0)((flatten(tensors),))
        return unflatten(flat, tensors)

    def barrier(self) -> None:
        """Wait until every worker gets here (e.g. before reading a file rank 0 has just written)."""
        if self.world_size > 1:
            self._all_reduce(Tensor(np.zeros(1, np.float32))).asnumpy()

    def gather_rows(self, local_rows: np.ndarray, start: int, num_rows: int) -> np.ndarray:
        """Every worker's rows [start, start+len) of a (num_rows, ...) array → the whole array on all."""
        if self.world_size == 1:
            return local_rows
        full = np.zeros((num_rows, *local_rows.shape[1:]), dtype=np.float32)
        full[start:start + len(local_rows)] = local_rows
        return self.sum_arrays([full])[0].astype(local_rows.dtype)


def flatten(tensors: list):
    """One 1-D tensor of all elements: one collective call instead of one per tensor."""
    return ops.cat([ops.reshape(t, (-1,)) for t in tensors])


def unflatten(flat, like: list) -> list:
    """`flatten`'s inverse: pieces of `flat` shaped as the tensors in `like`."""
    parts = ops.split(flat, [int(np.prod(t.shape)) for t in like])
    return [ops.reshape(part, tuple(t.shape)) for part, t in zip(parts, like)]
