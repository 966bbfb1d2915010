"""PyTorch + PEFT side of bench/train_bench.ts: the same LoRA training steps on the same demo model, one thread.

Prints one JSON line: {"tokensPerSecond": ..., "tokensPerCpuSecond": ..., "steps": ..., "loss": ...}.
Usage (from the repository root): python bench/train_bench_torch.py STEPS BATCH SEQ
"""
import json
import os
import sys
import time

import torch
from peft import LoraConfig, get_peft_model

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "make", "train"))
from make_train import load_llama  # noqa: E402

torch.set_num_threads(1)
steps, batch, seq = (int(a) for a in sys.argv[1:4])
base = load_llama(os.path.join("..", "..", "examples", "demo", "byte-llama"))
model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                        lora_dropout=0.0))
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=2e-3)
g = torch.Generator().manual_seed(0)


def step():
    ids = torch.randint(3, 256, (batch, seq), generator=g)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad()
    return loss.item()


for _ in range(2):
    step()
start, cpu_start = time.perf_counter(), time.process_time()
for _ in range(steps):
    loss = step()
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
tokens = steps * batch * seq
print(json.dumps({"tokensPerSecond": tokens / seconds, "tokensPerCpuSecond": tokens / cpu_seconds, "steps": steps,
                  "loss": loss}))
