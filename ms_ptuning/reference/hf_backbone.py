"""The Backbone interface (see `ms_ptuning.hf_backbone`) over a Hugging Face torch model."""

from torch import nn
from transformers.cache_utils import DynamicCache

from ..deberta_prefix import DEBERTA_MODEL_TYPES, forward_with_prefix


class HFBackbone(nn.Module):
    """The model's submodules are registered directly under this module, so parameter names read
    `<path>.<Hugging Face name>` as they do on the MindSpore side; the model itself is only called."""

    def __init__(self, model, trainable: bool = True):
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        self.__dict__["model"] = model
        self.config = model.config
        for parameter in model.parameters():
            parameter.requires_grad = trainable

    def train(self, mode: bool = True):
        self.model.train(mode)
        return super().train(mode)

    @property
    def word_embedding_weight(self):
        return self.model.get_input_embeddings().weight

    @property
    def pooler(self):
        return getattr(self.model, "pooler", None)

    def drop_pooler(self):
        if self.pooler is not None:
            self.model.pooler = None
            del self._modules["pooler"]

    def embed_words(self, input_ids):
        return self.model.get_input_embeddings()(input_ids)

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, token_type_ids=None,
                position_ids=None, prefix_key_values=None):
        inputs = {name: value for name, value in dict(input_ids=input_ids, inputs_embeds=inputs_embeds,
                                                      attention_mask=attention_mask, token_type_ids=token_type_ids,
                                                      position_ids=position_ids).items() if value is not None}
        if prefix_key_values is not None and self.config.model_type in DEBERTA_MODEL_TYPES:
            num_prefix = prefix_key_values[0][0].shape[-2]
            inputs["attention_mask"] = attention_mask[:, num_prefix:]
            if position_ids is not None:
                inputs["position_ids"] = position_ids - num_prefix
            outputs = forward_with_prefix(self.model, prefix_key_values, **inputs)
        elif prefix_key_values is not None:
            outputs = self.model(**inputs, past_key_values=DynamicCache.from_legacy_cache(prefix_key_values))
        else:
            outputs = self.model(**inputs)
        pooled = getattr(outputs, "pooler_output", None) if self.pooler is not None else None
        return outputs.last_hidden_state, pooled

    def pool(self, sequence_output):
        return None if self.pooler is None else self.pooler(sequence_output)


def as_backbone(model, trainable: bool = True) -> HFBackbone:
    return HFBackbone(model, trainable)
