"""A base of SmolLM2-135M's shape with random weights, exported with a KV cache as Optimum does
(TorchScript, input_ids / attention_mask / position_ids / past_key_values.N.key|value in, logits /
present.N.key|value out), plus a PEFT LoRA (r=16, lora_alpha=32, random A and B) on the seven
projections of every layer. For benches only (nothing here is test data):

    /path/to/venv/bin/python bench/support/make_smollm_shape.py OUT_DIR

writes OUT_DIR/base (config.json, onnx/model.onnx) and OUT_DIR/lora (adapter_config.json,
adapter_model.safetensors). About 540 MB of fp32 weights; a minute or two on two cores.
"""

import os
import sys

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "make"))
from common import WithCache  # noqa: E402  (the KV-cache export wrapper the test fixtures use)

# SmolLM2-135M's config.json, minus the tokenizer ids.
CONFIG = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
              num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5,
              rope_theta=100000.0, tie_word_embeddings=True, hidden_act="silu")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main(out):
    torch.manual_seed(0)
    cfg = LlamaConfig(**CONFIG)
    model = LlamaForCausalLM(cfg).eval()
    base = os.path.join(out, "base")
    os.makedirs(os.path.join(base, "onnx"), exist_ok=True)
    cfg.use_cache = True
    layers, heads = cfg.num_hidden_layers, cfg.num_key_value_heads
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    past = [f"past_key_values.{i}.{k}" for i in range(layers) for k in ("key", "value")]
    present = [f"present.{i}.{k}" for i in range(layers) for k in ("key", "value")]
    axes = {"input_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
            "position_ids": {0: "batch_size", 1: "sequence_length"},
            "logits": {0: "batch_size", 1: "sequence_length"},
            **{n: {0: "batch_size", 2: "past_sequence_length"} for n in past},
            **{n: {0: "batch_size", 2: "total_sequence_length"} for n in present}}
    example = (torch.tensor([[5, 9, 11]]), torch.ones(1, 5, dtype=torch.long), torch.tensor([[2, 3, 4]]),
               *[torch.zeros(1, heads, 2, head_dim) for _ in past])
    with torch.no_grad():
        torch.onnx.export(WithCache(model).eval(), example, os.path.join(base, "onnx", "model.onnx"),
                          input_names=["input_ids", "attention_mask", "position_ids", *past],
                          output_names=["logits", *present], dynamic_axes=axes, opset_version=18, dynamo=False)
    cfg.to_json_file(os.path.join(base, "config.json"))
    lora = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS, init_lora_weights=False))
    lora.save_pretrained(os.path.join(out, "lora"))


if __name__ == "__main__":
    main(sys.argv[1])
