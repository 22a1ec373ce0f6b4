"""Benchmark cases: backbone sizes, P-tuning settings, batch shapes. Pure data, shared by both workers."""

BERT_BASE = dict(model_type="bert", vocab_size=21128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512)
GPT2_SMALL = dict(model_type="gpt2", vocab_size=21128, n_embd=768, n_layer=12, n_head=12, n_positions=1024)
# Llama-shaped, 124.7M parameters (untied LM head; 75.5M in the 12 layers): grouped-query attention (4 key/value
# heads for 12), SwiGLU 2048, Llama's 32000-token vocabulary
LLAMA_100M = dict(model_type="llama", vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  num_key_value_heads=4, intermediate_size=2048, max_position_embeddings=2048,
                  tie_word_embeddings=False)
TINY_BERT = dict(model_type="bert", vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=64)

CASES = {
    "bert_base_prefix": dict(backbone=BERT_BASE, head="sequence_classification", mode="prefix", pre_seq_len=16,
                             batch_size=8, seq_len=128),
    "bert_base_prompt": dict(backbone=BERT_BASE, head="sequence_classification", mode="prompt", pre_seq_len=16,
                             batch_size=8, seq_len=128),
    "bert_base_finetune": dict(backbone=BERT_BASE, head="sequence_classification", mode="finetune", pre_seq_len=16,
                               batch_size=8, seq_len=128),
    "gpt2_small_prefix": dict(backbone=GPT2_SMALL, head="causal_lm", mode="prefix", pre_seq_len=16,
                              batch_size=2, seq_len=256),
    # torch side: transformers' LlamaForCausalLM under real peft PrefixTuning (not the project's torch mirror)
    "llama_100m_prefix": dict(backbone=LLAMA_100M, head="causal_lm", mode="prefix", pre_seq_len=16,
                              batch_size=4, seq_len=256, torch_reference="peft"),
    # millisecond steps: timed 50 at a time (see benchmarks/run.py)
    "tiny_prefix": dict(backbone=TINY_BERT, head="sequence_classification", mode="prefix", pre_seq_len=4,
                        batch_size=2, seq_len=8, round_steps=50),
}
DEFAULT_CASES = tuple(CASES)


def make_batch(case: dict, seed: int = 0) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (case["batch_size"], case["seq_len"])
    input_ids = rng.integers(5, case["backbone"]["vocab_size"], shape).astype(np.int64)
    batch = {"input_ids": input_ids, "attention_mask": np.ones(shape, np.int64)}
    if case["head"] == "causal_lm":
        batch["labels"] = input_ids.copy()
    else:
        batch["labels"] = rng.integers(0, 2, case["batch_size"]).astype(np.int64)
    return batch
