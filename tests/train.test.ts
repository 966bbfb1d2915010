// Training against PyTorch + PEFT: the same steps on the same tiny models
// (references from tests/fixtures/make/train/make_train.py). Per-call loss
// and grad norm within 1e-4 relative, the trained tensors within 1e-4 of
// what PEFT saved, the saved adapter PEFT's files, and its logits the
// PyTorch-trained model's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fromPretrained, loadBaseModel, Tensor } from "../mod.ts";
import { fixture, maxAbsDiff } from "./support/fixtures.ts";
import { reference, relDiff, safetensorsAt, tempDir, tensorRelDiff, trainCase } from "./support/train.ts";

const REL = 1e-4;

/** An empty KV cache's dims from config.json (Llama or GPT-2 keys). */
function pastDims(c: Readonly<Record<string, unknown>>): number[] {
  const heads = (c.num_attention_heads ?? c.n_head) as number;
  const hidden = (c.hidden_size ?? c.n_embd) as number;
  return [1, (c.num_key_value_heads ?? heads) as number, 0, hidden / heads];
}

async function trainedModel(name: string) {
  const ref = await reference(name);
  const base = await loadBaseModel(fixture(ref.base), { device: "wasm" });
  const model = await fromPretrained(base, trainCase(name, "start"), { isTrainable: true, onWarning: () => {} });
  return { ref, base, model };
}

for (
  const name of [
    "llama-qv-sgd",
    "llama-qv-adamw-accum",
    "llama-mlp-cosine",
    "llama-embed-sgd",
    "gpt2-cattn-adamw",
    "llama-dora-sgd",
    "llama-qv-lorabias-adamw",
    "gpt2-cattn-loraonly-sgd",
    "gpt2-bias-all-adamw",
    "llama-qv-lmhead-adamw",
    "llama-mlp-embedsave-sgd",
    "gpt2-dora-loraonly-sgd",
    "llama-dora-dropout-sgd",
    "llama-qv-dropout-adamw",
    "llama-qv-tokens-adamw",
  ]
) {
  test(`${name}: per-call loss and grad norm, trained tensors and logits match PyTorch + PEFT`, async () => {
    const { ref, model } = await trainedModel(name);
    const { trainable, all } = model.getNbTrainableParameters();
    assert.equal(trainable, ref.trainableParameters);
    // GPT-2's export shares equal constants (zero LayerNorm biases), so its ONNX holds fewer base parameters.
    if (ref.base !== "gpt2-tiny") assert.equal(all, ref.allParameters);
    const trainer = model.trainer(ref.trainer);
    for (const [i, batch] of ref.batches.entries()) {
      const r = await trainer.step(batch);
      const want = ref.calls[i];
      assert.ok(relDiff(r.loss, want.loss) < REL, `call ${i}: loss ${r.loss} vs ${want.loss}`);
      assert.ok(
        relDiff(r.learningRate, want.lr) < 1e-9 || want.lr === r.learningRate,
        `call ${i}: lr ${r.learningRate} vs ${want.lr}`,
      );
      if (want.gradNorm === null) {
        assert.equal(r.gradNorm, undefined);
        assert.equal(r.updated, false);
      } else {
        assert.ok(r.updated);
        assert.ok(relDiff(r.gradNorm!, want.gradNorm) < REL, `call ${i}: grad norm ${r.gradNorm} vs ${want.gradNorm}`);
      }
    }
    // The saved tensors: PEFT's keys and config, values within 1e-4 of PyTorch's.
    const out = await tempDir();
    await model.savePretrained(out);
    const ours = await safetensorsAt(`${out}/adapter_model.safetensors`);
    const theirs = await safetensorsAt(trainCase(name, "end", "adapter_model.safetensors"));
    assert.deepEqual(ours.names().sort(), theirs.names().sort());
    assert.deepEqual(ours.metadata, theirs.metadata);
    for (const key of theirs.names()) {
      assert.equal(ours.info(key).dtype, theirs.info(key).dtype, key);
      assert.deepEqual(ours.info(key).shape, theirs.info(key).shape, key);
      const d = tensorRelDiff(ours.toFloat32(key), theirs.toFloat32(key));
      assert.ok(d < REL, `${key}: relative max diff ${d}`);
    }
    const config = JSON.parse(await readFile(`${out}/adapter_config.json`, "utf8"));
    const peft = JSON.parse(await readFile(trainCase(name, "end", "adapter_config.json"), "utf8"));
    assert.deepEqual(Object.keys(config).sort(), Object.keys(peft).sort());
    assert.deepEqual(config, peft);
    // Inference on the trained model, and on the saved adapter loaded afresh, gives PyTorch's trained logits.
    const e = await safetensorsAt(trainCase(name, "end_logits.safetensors"));
    const ids = e.toFloat32("input_ids");
    const feeds = {
      input_ids: new Tensor("int64", BigInt64Array.from(ids, (v) => BigInt(v)), [1, ids.length]),
      attention_mask: new Tensor("int64", new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
      position_ids: new Tensor("int64", BigInt64Array.from(ids, (_, i) => BigInt(i)), [1, ids.length]),
      ...Object.fromEntries(
        model.inputNames.filter((n) => n.startsWith("past_key_values")).map((n) => [
          n,
          new Tensor("float32", new Float32Array(0), pastDims(model.config)),
        ]),
      ),
    };
    const expectedLogits = e.toFloat32("logits");
    const live = (await model.run(feeds)).logits.data as Float32Array;
    assert.ok(
      maxAbsDiff(live, expectedLogits) < 1e-4,
      `trained model logits differ by ${maxAbsDiff(live, expectedLogits)}`,
    );
    const reloaded = await fromPretrained(model.base, out, { onWarning: () => {} });
    const again = (await reloaded.run(feeds)).logits.data as Float32Array;
    assert.ok(
      maxAbsDiff(again, expectedLogits) < 1e-4,
      `reloaded logits differ by ${maxAbsDiff(again, expectedLogits)}`,
    );
    await reloaded.release();
    await model.release();
  });
}
