"""Which backend runs a model: `graph` (native MindSpore Cells, whole steps compiled in GRAPH_MODE) or
`eager` (the mindnlp model op by op in PyNative).

Models always come in through mindnlp (`backbones.load_backbone`: config, tokenizer, safetensors). On the
graph backend the loaded weights then move into the native Cell of the same architecture
(`native.to_native`, no second copy) and training runs through the compiled step engine (`GraphSteps`);
on the eager backend the mindnlp model itself runs (`EagerSteps`). `--backend auto`, the default, picks
graph wherever a native backbone exists (BERT, RoBERTa, GPT-2, Llama, Qwen2) and eager for the rest
(DeBERTa, DeBERTa-v2).
"""

from dataclasses import dataclass

from .native import NATIVE_MODEL_TYPES, to_native
from .training import EagerSteps, GraphSteps

BACKENDS = ("auto", "graph", "eager")
BACKEND_HELP = ("graph (native MindSpore Cells compiled in GRAPH_MODE: bert, roberta, gpt2, llama, qwen2) | eager "
                "(the mindnlp model op by op: every model) | auto (graph where a native backbone exists)")


@dataclass(frozen=True)
class Backend:
    name: str  # "graph" or "eager"
    reason: str

    @property
    def is_graph(self) -> bool:
        return self.name == "graph"

    @property
    def steps(self):
        """The step engine class the Trainer runs this backend with."""
        return GraphSteps if self.is_graph else EagerSteps

    def backbone(self, model):
        """What the heads wrap: the loaded mindnlp model moved into its native Cell (graph), or itself."""
        return to_native(model) if self.is_graph else model

    def describe(self) -> str:
        return f"[ms_ptuning] backend: {self.name} ({self.reason})"


def choose_backend(requested: str, model_type: str) -> Backend:
    """The backend for `--backend requested` on a `model_type` backbone, with the reason in words."""
    if requested not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    native = model_type in NATIVE_MODEL_TYPES
    if requested == "graph" and not native:
        raise ValueError(f"--backend graph: there is no native graph-mode backbone for {model_type!r} (native: "
                         f"{', '.join(NATIVE_MODEL_TYPES)}); pass --backend eager or auto to run it on mindnlp")
    if requested == "eager":
        return Backend("eager", "--backend eager: the mindnlp model runs op by op in PyNative")
    if native:
        how = "--backend graph" if requested == "graph" else f"{model_type} has a native backbone"
        return Backend("graph", f"{how}: native MindSpore Cells, train and eval steps compiled in GRAPH_MODE")
    return Backend("eager", f"{model_type} has no native backbone: the mindnlp model runs op by op in PyNative")
