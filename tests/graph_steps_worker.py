"""The toy classifier of test_graph_steps.py trained for 4 steps by GraphSteps, in one process or as an msrun
worker: `python graph_steps_worker.py OUTPUT.npz PER_DEVICE_BATCH`. Writes the step losses and the final
trainable weights (rank 0 only). 9 rows in global batches of 4 (4, 4, 1): in the last one worker 1 has no row.
Dropout 0.3 on: each worker draws the masks of its rows of the global batch, so 2 workers take one process's steps."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ms_ptuning.distributed import serve_if_scheduler  # noqa: E402

serve_if_scheduler()  # msrun's scheduler process stops here

import numpy as np  # noqa: E402

from ms_ptuning.backend import set_device_target  # noqa: E402
from ms_ptuning.distributed import DataParallel  # noqa: E402
from ms_ptuning.training.graph_steps import GraphSteps  # noqa: E402
from ms_ptuning.training.precision import LossScaler  # noqa: E402
from ms_ptuning.weights import to_numpy, trainable_weights  # noqa: E402
from toy_classifier import arguments, micro_batch_stream, toy  # noqa: E402

STEPS, ACCUMULATION = 4, 2


def main(output: str, per_device: int) -> None:
    set_device_target("CPU")
    parallel = DataParallel.from_environment()
    model = toy(dropout=0.3)
    args = arguments(os.path.dirname(output), per_device_train_batch_size=per_device,
                     gradient_accumulation_steps=ACCUMULATION)
    steps = GraphSteps(model, trainable_weights(model), args, LossScaler("none"), parallel)
    stream = micro_batch_stream(size=9, batch=4)
    losses = []
    for step in range(STEPS):
        micro_batches = [next(stream) for _ in range(ACCUMULATION)]
        losses.append(steps.train_step(micro_batches, [2 * step, 2 * step + 1], 1e-2).loss)
    if parallel.is_main:
        np.savez(output, losses=np.array(losses), **to_numpy(trainable_weights(model)))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
