"""Command-line arguments → PTuningConfig: the one path shared by `run`, `summarization` and LAMA.

`PTuningArguments` holds the flags that say what to tune (the reference's `--prefix/--prompt`,
`--pre_seq_len`, ...); each entry point's ModelArguments extends it with its own model flags and defaults,
and `ptuning_config()` turns them into the PTuningConfig every head is built with.
"""

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .config import PTuningConfig
from .device.jit import DEFAULT_JIT_LEVEL, JIT_LEVEL_HELP
from .execution import BACKEND_HELP
from .training.optim import L2_WEIGHT_DECAY


@dataclass(kw_only=True)
class PTuningArguments:
    mode: str = field(default="prefix", metadata={"help": "prefix (P-tuning v2) | prompt (P-tuning) | finetune"})
    pre_seq_len: int = field(default=4, metadata={"help": "prefix / prompt length"})
    prefix_projection: bool = field(default=False, metadata={"help": "reparameterize the prefix with an MLP"})
    prefix_hidden_size: int = field(default=512, metadata={"help": "hidden size of that MLP"})
    prompt_encoder_type: str = field(default="embedding", metadata={
        "help": "prompt mode: embedding (a bare table, THUDM's P-tuning v2 --prompt) | lstm | mlp (P-tuning v1)"})
    freeze_backbone: bool = field(default=False, metadata={
        "help": "finetune mode: train the head only, the backbone frozen (THUDM's fix_bert, which its NER, QA and "
                "COPA fine-tuning applies); prefix/prompt modes freeze the backbone anyway"})
    backend: str = field(default="auto", metadata={"help": BACKEND_HELP})
    jit_level: str = field(default=DEFAULT_JIT_LEVEL, metadata={"help": JIT_LEVEL_HELP})

    def ptuning_config(self, dropout: float, num_labels: int = 2,
                       problem_type: str = "single_label_classification") -> PTuningConfig:
        """`dropout` is the reference's hidden_dropout_prob: it drops the prefix and the classifier input too."""
        return PTuningConfig(mode=self.mode, pre_seq_len=self.pre_seq_len, prefix_projection=self.prefix_projection,
                             prefix_hidden_size=self.prefix_hidden_size, prompt_encoder_type=self.prompt_encoder_type,
                             prefix_dropout=dropout, classifier_dropout=dropout, num_labels=num_labels,
                             problem_type=problem_type, freeze_backbone=self.freeze_backbone)


@dataclass(kw_only=True)
class ModelArguments(PTuningArguments):
    """`python -m ms_ptuning.run`'s model flags."""

    model_name_or_path: str = field(metadata={"help": "local model directory (config.json + *.safetensors)"})
    tokenizer_name: str | None = field(default=None, metadata={"help": "tokenizer directory if not the model's"})
    hidden_dropout_prob: float = field(default=0.1, metadata={
        "help": "dropout of the backbone, the prefix and the classifier, as the reference sets it (GPT-2: resid_pdrop and "
                "embd_pdrop)"})
    attention_probs_dropout_prob: float | None = field(default=None, metadata={
        "help": "dropout of the attention probabilities (GPT-2: attn_pdrop, Llama/Qwen2: attention_dropout; "
                "default: the model's config.json, which the reference keeps)"})
    device_target: str = field(default="CPU", metadata={"help": "CPU | GPU | Ascend"})
    init_from: str | None = field(default=None, metadata={
        "help": "start from an adapter's weights: an ms_ptuning adapter, a peft adapter directory or a THUDM/P-tuning-v2 "
                "output directory (it must fit the run's head, mode, pre_seq_len, encoder and labels)"})
    allow_pickle: bool = field(default=False, metadata={
        "help": "load pickled pytorch_model.bin weights when the model has no *.safetensors (runs any code "
                "the file holds: only for files you trust)"})

    def dropout_flags(self) -> dict:
        """{flag: value} of the backbone dropout flags given (`backbones.dropout_fields` names the fields
        they set in each model type's config)."""
        flags = {"hidden_dropout_prob": self.hidden_dropout_prob}
        if self.attention_probs_dropout_prob is not None:
            flags["attention_probs_dropout_prob"] = self.attention_probs_dropout_prob
        return flags


@dataclass
class RunTrainingArguments(TrainingArguments):
    """TrainingArguments with the defaults of the reference's run scripts."""

    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"
    logging_steps: float = 10
    save_total_limit: int | None = 2
    report_to: str = "none"
    optim: str = field(default="adamw_torch", metadata={
        "help": "adamw_torch | adamw_torch_fused (torch's AdamW) | adam_l2 (torch.optim.Adam: weight_decay added to "
                "every gradient as L2, THUDM/P-tuning's LAMA optimizer)"})
    resume: bool = field(default=False, metadata={
        "help": "continue from the latest complete checkpoint in output_dir (refused if the run's settings differ)"})
    lr_decay_per_epoch: float | None = field(default=None, metadata={
        "help": "instead of lr_scheduler_type: lr × gamma^epoch (the reference's ExponentialLR for NER/SRL/QA)"})
    ties_are_improvements: bool = field(default=False, metadata={
        "help": "a dev metric equal to the best so far is a new best (the later evaluation is kept) and restarts "
                "early stopping's patience, as THUDM/P-tuning's LAMA loop (>=); default: strictly better, as HF"})
    mixed_precision: str = field(default="no", metadata={
        "help": "no (float32) | fp16 (dynamic loss scaling) | bf16: the frozen backbone computes in that dtype, "
                "trainable weights stay float32; for GPU/Ascend (on CPU fp16 runs but is slower, bf16 has no kernels)"})

    def __post_init__(self):
        # Hugging Face's own check knows no torch Adam: it sees adamw_torch, and adam_l2 is put back after it
        l2 = getattr(self.optim, "value", self.optim) == L2_WEIGHT_DECAY
        if l2:
            self.optim = "adamw_torch"
        super().__post_init__()
        if l2:
            self.optim = L2_WEIGHT_DECAY
