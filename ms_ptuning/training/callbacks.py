"""Hugging Face callbacks around the Trainer: the default set, tensorboard, and callback state in checkpoints.

The Trainer fires transformers' own `TrainerCallback` events through transformers' `CallbackHandler`, with a
real `TrainerState` and `TrainerControl`, so HF's `DefaultFlowCallback` decides when to log, evaluate and
save, and `EarlyStoppingCallback` works unchanged.
"""

import importlib

from transformers.integrations import TensorBoardCallback as HFTensorBoardCallback
from transformers.trainer_callback import (DefaultFlowCallback, EarlyStoppingCallback as HFEarlyStoppingCallback,
                                           ExportableState, PrinterCallback, ProgressCallback, TrainerControl)

TENSORBOARD_PACKAGE = "tensorboardX"  # torch.utils.tensorboard is real torch's; mindnlp's torch has none


class TensorBoardCallback(HFTensorBoardCallback):
    """HF's TensorBoardCallback. Its on_train_begin writes `model.config.to_json_string()`, which the
    ms_ptuning heads' PTuningConfig does not have, so the model is left out of that one call (the training
    arguments are still written as text)."""

    def on_train_begin(self, args, state, control, **kwargs):
        kwargs.pop("model", None)
        super().on_train_begin(args, state, control, **kwargs)


class EarlyStoppingCallback(HFEarlyStoppingCallback):
    """transformers' EarlyStoppingCallback, which also honours ms_ptuning's `ties_are_improvements`: a dev
    metric equal to the best so far then restarts the patience, as the Trainer then makes it the new best
    (THUDM/P-tuning's LAMA loop compares with >=). Without that flag it is transformers' callback unchanged."""

    def check_metric_value(self, args, state, control, metric_value):
        if getattr(args, "ties_are_improvements", False) and metric_value == state.best_metric:
            self.early_stopping_patience_counter = 0
        else:
            super().check_metric_value(args, state, control, metric_value)


def check_callbacks(args, callbacks: list) -> None:
    """transformers' own EarlyStoppingCallback would count a tie as no improvement while the Trainer, with
    `ties_are_improvements`, makes it the new best: refused, naming the one that agrees."""
    if getattr(args, "ties_are_improvements", False) and any(
            type(callback) is HFEarlyStoppingCallback for callback in callbacks):
        raise ValueError("ties_are_improvements=True: transformers' EarlyStoppingCallback counts a tie as no "
                         "improvement; use ms_ptuning.training.EarlyStoppingCallback, which agrees with the Trainer")


def tensorboard_installed() -> bool:
    try:
        importlib.import_module(TENSORBOARD_PACKAGE)
    except ImportError:
        return False
    return True


def reporting_callbacks(report_to) -> list:
    """report_to → callbacks. 'tensorboard' needs tensorboardX (a clear error without it); 'all' means the
    supported integrations that are installed, as in HF."""
    names = [name for name in (report_to or []) if name != "none"]
    if "tensorboard" in names and not tensorboard_installed():
        raise ImportError(f"report_to tensorboard needs the {TENSORBOARD_PACKAGE} package, which is not installed: "
                          f"pip install {TENSORBOARD_PACKAGE} (or drop --report_to tensorboard)")
    if "tensorboard" in names or ("all" in names and tensorboard_installed()):
        return [TensorBoardCallback()]
    return []


def default_callbacks(args) -> list:
    """HF's order: the flow callback, the reporting ones; the progress/printer one is added last."""
    return [DefaultFlowCallback(), *reporting_callbacks(args.report_to)]


def progress_callback(args):
    return PrinterCallback() if args.disable_tqdm else ProgressCallback()


def callback_states(callbacks: list, control: TrainerControl) -> dict:
    """class name → state() (a list when several callbacks share a class), for TrainerState.stateful_callbacks."""
    states = {}
    for callback in [*callbacks, control]:
        if isinstance(callback, ExportableState):
            states.setdefault(type(callback).__name__, []).append(callback.state())
    return {name: found[0] if len(found) == 1 else found for name, found in states.items()}


def restore_callback_states(handler, control: TrainerControl, stored: dict) -> None:
    """Give the handler's ExportableState callbacks (and `control`) the attributes a checkpoint stored, as HF's
    `_load_callback_state`: each is rebuilt from its stored args; classes not stored stay as they are."""
    for name, data in stored.items():
        data = data if isinstance(data, list) else [data]
        matching = [callback for callback in handler.callbacks if type(callback).__name__ == name]
        for callback, callback_data in zip(matching, data):
            rebuilt = type(callback)(**callback_data.get("args", {}))
            for attribute, value in callback_data.get("attributes", {}).items():
                setattr(rebuilt, attribute, value)
            handler.callbacks[handler.callbacks.index(callback)] = rebuilt
        if name == type(control).__name__:  # TrainerControl keeps its flags under "args"
            for attribute, value in {**data[0].get("args", {}), **data[0].get("attributes", {})}.items():
                setattr(control, attribute, value)
