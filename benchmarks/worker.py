"""One side of the benchmark in its own process: `python -m benchmarks.worker ms|torch CASE THREADS`.

Reads commands from stdin, one per line: `train` (one optimizer step: forward, backward, clip, AdamW),
`infer` (one eval-mode forward), `fold` (fold the prefix/prompt encoder), `rss` (peak resident memory), `quit`; answers one JSON line each.
The torch side never imports mindnlp (it would replace torch).
"""

import json
import resource
import sys
import time

from .configs import CASES, make_batch

LEARNING_RATE, MAX_GRAD_NORM = 1e-3, 1.0


def ptuning_config(case):
    from ms_ptuning.config import PTuningConfig

    return PTuningConfig(mode=case["mode"], pre_seq_len=case["pre_seq_len"], num_labels=2)


def torch_side(case, threads):
    import torch
    import transformers

    from ms_ptuning.reference.models import HEADS

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    backbone = transformers.AutoModel.from_config(transformers.AutoConfig.for_model(**case["backbone"]),
                                                  attn_implementation="eager")
    model = HEADS[case["head"]](backbone, ptuning_config(case))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE)
    batch = {k: torch.tensor(v) for k, v in make_batch(case).items()}

    def train():
        model.train()
        loss, _ = model(**batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad()
        return float(loss)

    def infer():
        model.eval()
        with torch.no_grad():
            _, outputs = model(**{k: v for k, v in batch.items() if k != "labels"})
        return float(outputs.flatten()[0])

    return train, infer, lambda: None


def mindspore_side(case, threads, device_target="CPU"):
    import mindspore

    from ms_ptuning.backend import seed_everything, set_device_target, set_threads, torch
    from ms_ptuning.backbones import build_backbone
    from ms_ptuning.encoders import fold_encoders
    from ms_ptuning.models import HEADS
    from ms_ptuning.training.optim import AdamW, clip_by_global_norm, global_norm
    from ms_ptuning.weights import trainable_weights
    import transformers

    set_device_target(device_target)
    set_threads(threads)
    seed_everything(0)
    model = HEADS[case["head"]](build_backbone(transformers.AutoConfig.for_model(**case["backbone"])),
                                ptuning_config(case))
    params = trainable_weights(model)
    optimizer = AdamW(params, lr=LEARNING_RATE)
    grad_fn = mindspore.value_and_grad(lambda **b: model(**b)[0], None, list(params.values()))
    batch = {k: torch.tensor(v) for k, v in make_batch(case).items()}

    def train():
        model.set_train(True)
        loss, grads = grad_fn(**batch)
        grads = dict(zip(params, grads))
        grads = clip_by_global_norm(grads, MAX_GRAD_NORM, global_norm(grads))
        optimizer.step(grads, LEARNING_RATE)
        return float(loss.asnumpy())

    def infer():
        model.set_train(False)
        _, outputs = model(**{k: v for k, v in batch.items() if k != "labels"})
        return float(outputs.asnumpy().flatten()[0])

    return train, infer, lambda: fold_encoders(model)


def main(argv):
    side, case_name, threads = argv[0], argv[1], int(argv[2])
    train, infer, fold = (torch_side if side == "torch" else mindspore_side)(CASES[case_name], threads)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command == "fold":  # reuse the prefix/prompt encoder output from now on (ms side only)
            fold()
            print(json.dumps({"folded": True}), flush=True)
            continue
        if command == "rss":
            print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
            continue
        started = time.perf_counter()
        value = (train if command == "train" else infer)()
        print(json.dumps({"seconds": time.perf_counter() - started, "value": value}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
