"""Weights are read without trusting them: pickles are refused unless the user opts in, truncated safetensors
files are detected with a clear message, and name/shape/dtype mismatches name the offending tensors — in every
case before the model is changed."""

import os
import pickle
import shutil

import numpy as np
import pytest

from ms_ptuning import run as run_module
from ms_ptuning.adapters import load_adapter, save_adapter
from ms_ptuning.backbones import BackboneLoadError, build_backbone, load_backbone
from ms_ptuning.backend import seed_everything
from ms_ptuning.safe_loading import WeightsFileError, check_safetensors
from ms_ptuning.training import Trainer
from ms_ptuning.training.checkpoint import load_checkpoint
from ms_ptuning.weights import assign_weights, named_weights, to_numpy, trainable_weights
from tiny_runs import same_process_runs  # noqa: F401  (a fixture)
from tiny_runs import save_tiny_bert, tiny_arguments, tiny_classifier, tiny_dataset

SST2 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "tasks", "sst2")
SST2_RUN = ["--task", "sst2", "--data_dir", SST2, "--max_seq_length", "16", "--max_steps", "1", "--eval_strategy", "no",
            "--save_strategy", "no", "--disable_tqdm", "True"]


class Payload:
    """Unpickling this creates a file: the visible, harmless stand-in for code a hostile pickle would run."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def write_payload(path: str, marker: str) -> None:
    with open(path, "wb") as handle:
        pickle.dump({"bert.embeddings.word_embeddings.weight": Payload(marker)}, handle)


@pytest.fixture(scope="module")
def safetensors_dir(tmp_path_factory):
    return save_tiny_bert(str(tmp_path_factory.mktemp("safetensors_bert")))


@pytest.fixture(scope="module")
def pickled_dir(tmp_path_factory):
    """The same kind of model saved as pytorch_model.bin only (Hugging Face's pickle format)."""
    return save_tiny_bert(str(tmp_path_factory.mktemp("pickled_bert")), safe_serialization=False)


def copy_without_weights(source: str, target: str) -> str:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return target


def test_pickled_backbone_is_refused_by_default_and_loads_with_the_flag(pickled_dir, tmp_path, same_process_runs):
    assert "pytorch_model.bin" in os.listdir(pickled_dir)
    assert not [name for name in os.listdir(pickled_dir) if name.endswith(".safetensors")]
    with pytest.raises(BackboneLoadError, match=r"no \*\.safetensors weights \(only pickle files "
                                                r"\['pytorch_model\.bin'\]\).*--allow_pickle"):
        load_backbone(pickled_dir)
    with pytest.warns(UserWarning, match=r"unpickling pytorch_model\.bin .*runs any code the file contains"):
        backbone = load_backbone(pickled_dir, allow_pickle=True)
    seed_everything(0)  # as save_tiny_bert built it
    expected = {name: param.asnumpy() for name, param in build_backbone(backbone.config).named_parameters()}
    for name, param in backbone.named_parameters():
        assert np.array_equal(param.asnumpy(), expected[name]), name
    with pytest.warns(UserWarning, match="unpickling"):  # and through the driver's flag
        results = run_module.run(*run_module.parse(SST2_RUN + ["--model_name_or_path", pickled_dir, "--output_dir",
                                                               str(tmp_path), "--allow_pickle", "True"]))
    assert results["global_step"] == 1 and (tmp_path / "results.json").exists()


def test_hostile_pickle_is_never_unpickled_without_the_flag(safetensors_dir, tmp_path, same_process_runs):
    hostile = copy_without_weights(safetensors_dir, str(tmp_path / "hostile"))
    marker = str(tmp_path / "code_ran")
    write_payload(os.path.join(hostile, "pytorch_model.bin"), marker)
    with pytest.raises(BackboneLoadError, match="does not unpickle weights by default"):
        load_backbone(hostile)
    output_dir = tmp_path / "run"
    with pytest.raises(BackboneLoadError, match="pass --allow_pickle"):
        run_module.run(*run_module.parse(SST2_RUN + ["--model_name_or_path", hostile, "--output_dir", str(output_dir)]))
    assert not os.path.exists(marker) and not output_dir.exists()
    # the flag really unpickles (this is what it warns about): the payload runs, then loading fails
    with pytest.warns(UserWarning, match="unpickling"), pytest.raises(BackboneLoadError):
        load_backbone(hostile, allow_pickle=True)
    assert os.path.exists(marker)


def truncate(path: str, keep_fraction: float = 0.5) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(int(os.path.getsize(path) * keep_fraction))


def test_truncated_backbone_weights_are_detected(safetensors_dir, tmp_path):
    broken = copy_without_weights(safetensors_dir, str(tmp_path / "broken"))
    shutil.copy(os.path.join(safetensors_dir, "model.safetensors"), broken)
    truncate(os.path.join(broken, "model.safetensors"))
    with pytest.raises(BackboneLoadError, match=r"model\.safetensors: truncated: \d+ bytes, its header describes \d+"):
        load_backbone(broken)


@pytest.mark.parametrize("content, message", [
    (b"", r"truncated or not safetensors \(0 bytes, no header\)"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1", r"truncated or not safetensors: the header claims 16 bytes, "
                                                     r"the file has 15"),
    (b"\x08\x00\x00\x00\x00\x00\x00\x00not json", r"not a safetensors file \(unreadable header\)"),
    (b"PK\x03\x04 a zip archive, as torch.save writes", r"truncated or not safetensors: the header claims \d+ bytes")])
def test_files_that_are_not_safetensors_are_named(tmp_path, content, message):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsFileError, match=rf"weights\.safetensors: {message}"):
        check_safetensors(str(path))


# ---- adapters and training checkpoints ----------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 2-step run with a checkpoint after each step, and its adapter."""
    output_dir = tmp_path_factory.mktemp("run")
    model = tiny_classifier()
    Trainer(model, tiny_arguments(output_dir), train_dataset=tiny_dataset()).train()
    save_adapter(model, str(output_dir / "adapter"))
    return output_dir


def test_truncated_checkpoint_is_detected_and_changes_nothing(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    truncate(str(copy / "checkpoint-2" / "optimizer.safetensors"), 0.7)
    with pytest.raises(WeightsFileError, match=r"checkpoint-2/optimizer\.safetensors: truncated: \d+ bytes, its "
                                               r"header describes \d+ \(an interrupted copy or write\?\)"):
        load_checkpoint(str(copy / "checkpoint-2"))
    model = tiny_classifier()
    before = to_numpy(named_weights(model))
    with pytest.raises(WeightsFileError, match="truncated"):
        Trainer(model, tiny_arguments(copy), train_dataset=tiny_dataset()).train(resume_from_checkpoint=True)
    after = to_numpy(named_weights(model))
    assert all(np.array_equal(before[name], after[name]) for name in before)


def test_truncated_adapter_is_detected_and_changes_nothing(trained_run, tmp_path):
    adapter = tmp_path / "adapter"
    shutil.copytree(trained_run / "adapter", adapter)
    truncate(str(adapter / "adapter.safetensors"), 0.9)
    model = tiny_classifier()
    before = to_numpy(trainable_weights(model))
    with pytest.raises(WeightsFileError, match=r"adapter\.safetensors: truncated"):
        load_adapter(model, str(adapter))
    after = to_numpy(trainable_weights(model))
    assert all(np.array_equal(before[name], after[name]) for name in before)


def test_pickled_adapter_and_checkpoint_files_are_refused(trained_run, tmp_path):
    marker = str(tmp_path / "code_ran")
    adapter = tmp_path / "adapter"
    shutil.copytree(trained_run / "adapter", adapter)
    os.remove(adapter / "adapter.safetensors")
    write_payload(str(adapter / "adapter_model.bin"), marker)  # peft's pickle format
    with pytest.raises(FileNotFoundError, match=r"has no adapter\.safetensors; its pickle files "
                                                r"\['adapter_model\.bin'\] are never unpickled"):
        load_adapter(tiny_classifier(), str(adapter))
    checkpoint = tmp_path / "checkpoint-2"
    shutil.copytree(trained_run / "checkpoint-2", checkpoint)
    os.remove(checkpoint / "optimizer.safetensors")
    write_payload(str(checkpoint / "optimizer.pt"), marker)
    with pytest.raises(FileNotFoundError, match=r"optimizer\.safetensors is missing; it holds pickle files "
                                                r"\['optimizer\.pt'\], which ms_ptuning never unpickles"):
        load_checkpoint(str(checkpoint))
    assert not os.path.exists(marker)


def test_mismatches_name_every_offending_tensor_and_change_nothing(trained_run):
    source = str(trained_run / "checkpoint-2")
    arrays, _, _ = load_checkpoint(source)
    prefix = "encoder.prefix_encoder.embedding.weight"
    model = tiny_classifier()
    before = to_numpy(named_weights(model))
    everything_but_one = {name: array for name, array in before.items() if name != "classifier.bias"}
    bad_inputs = [
        ({**arrays, prefix: arrays[prefix][:2]}, rf"wrong shape: {prefix}: .* has \(2, 256\) float32, model has "
                                                 rf"\(4, 256\)"),
        ({**arrays, prefix: arrays[prefix].astype(np.float64)}, rf"wrong dtype: {prefix}: .* has float64, model has "
                                                                rf"float32"),
        ({**arrays, "classifier.bias": arrays["classifier.bias"].astype(np.int64)},
         r"wrong dtype: classifier\.bias: .* has int64"),
        ({**arrays, "classifier.gate": arrays["classifier.bias"]}, r"unexpected 1: classifier\.gate")]
    for bad, message in bad_inputs:
        with pytest.raises(ValueError, match=rf"checkpoint-2 does not match the model: .*{message}"):
            assign_weights(model, bad, strict=False, source=source)
    with pytest.raises(ValueError, match=r"does not match the model: missing 1: classifier\.bias"):
        assign_weights(model, everything_but_one, source=source)
    after = to_numpy(named_weights(model))
    assert all(np.array_equal(before[name], after[name]) for name in before)
    assign_weights(model, {prefix: arrays[prefix].astype(np.float16)}, strict=False)  # widening loses nothing
    assert np.array_equal(to_numpy(named_weights(model))[prefix], arrays[prefix].astype(np.float16))
