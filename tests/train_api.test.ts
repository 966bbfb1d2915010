// The training API around the PyTorch-checked steps: checkpoints resume
// exactly (2 + 2 steps == 4 steps), createAdapter writes what PEFT's
// get_peft_model + save_pretrained write, dropout only while training,
// fit's loop, and clear errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createAdapter, fromPretrained, loadBaseModel, memorySource, UnsupportedError } from "../mod.ts";
import { serializeSafetensors, type TensorInput } from "../src/safetensors/mod.ts";
import { makeNode } from "../src/onnx/graph_parts.ts";
import { differentiate, gradientRegion } from "../src/train/differentiate.ts";
import { GradGraph } from "../src/train/grad_graph.ts";
import { fixture } from "./support/fixtures.ts";
import { reference, relDiff, safetensorsAt, tempDir, tensorRelDiff, trainCase } from "./support/train.ts";

const quiet = { onWarning: () => {} };

// With trained biases and a whole module too: their optimizer state is checkpointed beside the LoRA tensors'.
const resumeCases: [string, number][] = [
  ["llama-qv-sgd", 3],
  ["llama-qv-adamw-accum", 3],
  ["gpt2-bias-all-adamw", 1],
  ["llama-qv-lmhead-adamw", 2],
];
for (const [name, split] of resumeCases) {
  test(`${name}: a checkpoint after ${split} calls resumes on a fresh model to the same tensors as one run`, async () => {
    const ref = await reference(name);
    const base = await loadBaseModel(fixture(ref.base), { device: "wasm" });
    const start = trainCase(name, "start");
    const first = await fromPretrained(base, start, { isTrainable: true, ...quiet });
    const trainer = first.trainer(ref.trainer);
    // With accumulation 2, 3 calls leave one update plus half an accumulation in the checkpoint.
    for (const b of ref.batches.slice(0, split)) await trainer.step(b);
    const ckpt = await tempDir();
    await trainer.saveCheckpoint(ckpt);
    await first.release();

    const second = await fromPretrained(base, start, { isTrainable: true, ...quiet });
    const resumed = second.trainer({ ...ref.trainer, resumeFrom: ckpt });
    for (const [i, b] of ref.batches.slice(split).entries()) {
      const r = await resumed.step(b);
      const want = ref.calls[split + i];
      assert.ok(relDiff(r.loss, want.loss) < 1e-4, `call ${split + i}: loss ${r.loss} vs ${want.loss}`);
      if (want.gradNorm !== null) assert.ok(relDiff(r.gradNorm!, want.gradNorm) < 1e-4);
    }
    assert.equal(resumed.globalStep, ref.calls.filter((c) => c.gradNorm !== null).length);
    const out = await tempDir();
    await second.savePretrained(out);
    const ours = await safetensorsAt(`${out}/adapter_model.safetensors`);
    const theirs = await safetensorsAt(trainCase(name, "end", "adapter_model.safetensors"));
    for (const key of theirs.names()) {
      assert.ok(tensorRelDiff(ours.toFloat32(key), theirs.toFloat32(key)) < 1e-4, key);
    }
    await second.release();
  });
}

for (
  const name of [
    "created-qv-causal",
    "created-mlp-gaussian",
    "created-all-linear",
    "created-qv-lorabias",
    "created-qv-lmhead",
    "created-mlp-embedsave",
    "gpt2-created-bias-all",
    "gpt2-created-loraonly-dora",
  ]
) {
  test(`createAdapter ${name}: PEFT's keys, shapes, dtype and config; PEFT's init law`, async () => {
    const config = JSON.parse(await readFile(trainCase(name, "create_config.json"), "utf8"));
    const base = await loadBaseModel(fixture(name.startsWith("gpt2") ? "gpt2-tiny" : "llama-tiny"), { device: "wasm" });
    const model = await createAdapter(base, config, { seed: 3 });
    const out = await tempDir();
    await model.savePretrained(out);
    const ours = await safetensorsAt(`${out}/adapter_model.safetensors`);
    const peft = await safetensorsAt(trainCase(name, "adapter_model.safetensors"));
    assert.deepEqual(ours.names().sort(), peft.names().sort());
    assert.deepEqual(ours.metadata, peft.metadata);
    for (const key of peft.names()) {
      assert.deepEqual(ours.info(key), { ...ours.info(key), dtype: peft.info(key).dtype, shape: peft.info(key).shape });
      const t = ours.toFloat32(key);
      const p = peft.toFloat32(key);
      if (!key.includes("lora_A") && !key.includes("lora_B")) {
        // Copies of the base (modules_to_save, bias) and DoRA's magnitude (its weight norms, B being zero): PEFT's values.
        assert.ok(tensorRelDiff(t, p) < 1e-5, `${key}: relative max diff ${tensorRelDiff(t, p)}`);
      } else if (key.includes("lora_B")) {
        assert.ok(t.every((v) => v === 0) && p.every((v) => v === 0), `${key} starts at zero`);
      } else {
        // Same law as PEFT's: compare the spread (uniform bound 1/sqrt(in), or normal std 1/r).
        const rms = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
        assert.ok(relDiff(rms(t), rms(p)) < 0.25, `${key}: rms ${rms(t)} vs PEFT's ${rms(p)}`);
        const max = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        if (config.init_lora_weights === undefined) assert.ok(max(t) <= max(p) * 1.05 + 1e-6);
      }
    }
    const saved = JSON.parse(await readFile(`${out}/adapter_config.json`, "utf8"));
    const want = JSON.parse(await readFile(trainCase(name, "adapter_config.json"), "utf8"));
    // PEFT writes target_modules from a set (hash order): compare it as a set.
    const sorted = (c: { target_modules: unknown }) =>
      Array.isArray(c.target_modules) ? { ...c, target_modules: [...c.target_modules].sort() } : c;
    assert.deepEqual(sorted(saved), sorted(want));
    // The new adapter trains: its loss falls on a batch it sees repeatedly.
    const trainer = model.trainer({ optimizer: "adamw", learningRate: 0.02 });
    const batch = { inputIds: [[1, 72, 101, 108, 108, 111, 44, 32, 101, 100, 103, 101]] };
    const before = await model.loss(batch);
    for (let i = 0; i < 5; i++) await trainer.step(batch);
    assert.ok((await model.loss(batch)) < before - 0.01);
    await model.release();
  });
}

for (const [baseName, targets] of [["llama-tiny", ["q_proj", "v_proj"]], ["gpt2-tiny", ["c_attn"]]] as const) {
  test(`${baseName}: lora_dropout applies in training steps only, seeded`, async () => {
    const base = await loadBaseModel(fixture(baseName), { device: "wasm" });
    const cfg = {
      r: 4,
      lora_alpha: 8,
      target_modules: [...targets],
      fan_in_fan_out: baseName === "gpt2-tiny",
      init_lora_weights: false,
      lora_dropout: 0.5,
    };
    const batch = { inputIds: [[1, 72, 101, 108, 108, 111, 44, 32, 101, 100]] };
    const losses = async (seed: number) => {
      const model = await createAdapter(base, cfg, { seed: 1 });
      const evalLoss = await model.loss(batch);
      const trainer = model.trainer({ optimizer: "sgd", learningRate: 0, seed });
      const a = (await trainer.step(batch)).loss;
      const b = (await trainer.step(batch)).loss;
      await model.release();
      return { evalLoss, a, b };
    };
    const x = await losses(7);
    const y = await losses(7);
    const z = await losses(8);
    assert.deepEqual(x, y, "same seed, same masks");
    assert.notEqual(x.a, x.evalLoss, "training steps drop inputs");
    assert.notEqual(x.a, x.b, "a new mask per step");
    assert.notEqual(x.a, z.a, "the seed picks the masks");
    assert.equal(x.evalLoss, z.evalLoss);
  });
}

test("fit: epochs over padded batches, progress with tokens/s, abort between steps", async () => {
  const base = await loadBaseModel(fixture("llama-tiny"), { device: "wasm" });
  const model = await createAdapter(base, { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"] });
  const trainer = model.trainer({ learningRate: 0.01, gradientAccumulationSteps: 2 });
  const examples = [[1, 10, 11, 12, 13], [1, 20, 21], [1, 30, 31, 32], [1, 40, 41, 42, 43, 44]];
  const seen: number[] = [];
  const result = await trainer.fit(examples, {
    epochs: 2,
    batchSize: 2,
    onProgress: (p) => {
      assert.ok(p.tokensPerSecond > 0 && Number.isFinite(p.loss));
      seen.push(p.step);
    },
  });
  assert.deepEqual(seen, [0, 1, 1, 2]);
  assert.equal(result.steps, 2);
  const controller = new AbortController();
  controller.abort(new Error("stop"));
  await assert.rejects(trainer.fit(examples, { signal: controller.signal }), /stop/);
  assert.equal(trainer.globalStep, 2);
  // An epoch ending inside an accumulation still updates (HF Trainer), with what was accumulated.
  const partial = model.trainer({ learningRate: 0.01, gradientAccumulationSteps: 2 });
  const r = await partial.fit(examples.slice(0, 3), { batchSize: 1, shuffle: false });
  assert.equal(r.steps, 2);
  assert.equal(await partial.flush(), undefined);
  await model.release();
});

test("errors: an op without a gradient rule is named; isTrainable needs dynamic mode; trainer needs isTrainable", async () => {
  const nodes = [makeNode("Mul", ["x", "w"], ["y"], "m"), makeNode("Hardmax", ["y"], ["z"], "/odd/Hardmax")];
  const region = gradientRegion(nodes, ["w"]);
  const g = new GradGraph(new Set(["x", "w", "y", "z"]), "/grad", 17);
  const shapes = { shapes: new Map([["x", [2]], ["w", [2]], ["y", [2]], ["z", [2]]]), ints: new Map() };
  assert.throws(
    () => differentiate(nodes, region, "z", ["w"], shapes, g),
    (e) => e instanceof UnsupportedError && /Hardmax/.test(e.message) && /\/odd\/Hardmax/.test(e.message),
  );
  const base = await loadBaseModel(fixture("llama-tiny"), { device: "wasm" });
  await assert.rejects(
    fromPretrained(base, fixture("llama-tiny-lora-qv"), { isTrainable: true, mode: "merged", ...quiet }),
    (e) => e instanceof UnsupportedError && /dynamic/.test(e.message),
  );
  const frozen = await fromPretrained(base, fixture("llama-tiny-lora-qv"), quiet);
  assert.throws(() => frozen.trainer(), (e) => e instanceof UnsupportedError && /isTrainable/.test(e.message));
  assert.deepEqual([...frozen.getNbTrainableParameters()].slice(0, 1), [0]);
  const model = await fromPretrained(base, fixture("llama-tiny-lora-qv"), { isTrainable: true, ...quiet });
  assert.throws(() => model.trainer({ lrScheduler: "linear" }), /totalSteps/);
  assert.throws(() => model.trainer({ gradientAccumulationSteps: 0 }), /gradientAccumulationSteps/);
  const trainer = model.trainer();
  await assert.rejects(trainer.step({ inputIds: [[1, 2, 3], [4, 5]] }), /rectangular/);
  await assert.rejects(trainer.step({ inputIds: [[1, 2, 3]], labels: [[-100, -100, -100]] }), /no label token/);
  await assert.rejects(
    model.trainer({ resumeFrom: "/nonexistent/ckpt" }).step({ inputIds: [[1, 2, 3]] }),
    /trainer_state|adapter_model|optimizer/,
  );
  await model.release();
  await frozen.release();
});

test("errors: a bias PEFT trains that the adapter lacks, and a norm in modules_to_save, are refused for training", async () => {
  const folder = trainCase("gpt2-cattn-loraonly-sgd", "start");
  const config = JSON.parse(await readFile(`${folder}/adapter_config.json`, "utf8"));
  const st = await safetensorsAt(`${folder}/adapter_model.safetensors`);
  const tensors: Record<string, TensorInput> = Object.fromEntries(
    st.names().map((n) => [n, { dtype: "F32", shape: [...st.info(n).shape], data: st.toFloat32(n) }]),
  );
  const source = (name: string, cfg: unknown, t: Record<string, TensorInput>) =>
    memorySource(name, {
      "adapter_config.json": new TextEncoder().encode(JSON.stringify(cfg)),
      "adapter_model.safetensors": serializeSafetensors(t),
    });
  const base = await loadBaseModel(fixture("gpt2-tiny"), { device: "wasm" });
  // bias="lora_only" trains every wrapped module's bias: without h.1's, training would leave it out.
  const lacking = { ...tensors };
  delete lacking["base_model.model.transformer.h.1.attn.c_attn.base_layer.bias"];
  await assert.rejects(
    fromPretrained(base, source("lacking", config, lacking), { isTrainable: true, ...quiet }),
    (e) => e instanceof UnsupportedError && /lora_only/.test(e.message) && /h\.1\.attn\.c_attn/.test(e.message),
  );
  const n = st.info("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight").shape[1];
  const norm = {
    ...tensors,
    "base_model.model.transformer.ln_f.weight": { dtype: "F32", shape: [n], data: new Float32Array(n).fill(1.5) },
    "base_model.model.transformer.ln_f.bias": { dtype: "F32", shape: [n], data: new Float32Array(n).fill(0.5) },
  } satisfies Record<string, TensorInput>;
  await assert.rejects(
    fromPretrained(base, source("norm", { ...config, modules_to_save: ["ln_f"] }, norm), {
      isTrainable: true,
      ...quiet,
    }),
    (e) => e instanceof UnsupportedError && /norm in modules_to_save/.test(e.message) && /ln_f/.test(e.message),
  );
  // Both load for inference.
  const frozen = await fromPretrained(base, source("norm", { ...config, modules_to_save: ["ln_f"] }, norm), quiet);
  await frozen.release();
  await base.release();
});

test("errors: trainable tokens with a repeated id are refused for training with a typed error (they load for inference)", async () => {
  const folder = trainCase("llama-qv-tokens-adamw", "start");
  const config = JSON.parse(await readFile(`${folder}/adapter_config.json`, "utf8"));
  const st = await safetensorsAt(`${folder}/adapter_model.safetensors`);
  const tensors: Record<string, TensorInput> = Object.fromEntries(
    st.names().map((n) => [n, { dtype: "F32", shape: [...st.info(n).shape], data: st.toFloat32(n) }]),
  );
  // PEFT's index_copy keeps one of a repeated id's rows: which one trains is not defined, so training refuses.
  const source = memorySource("tokens", {
    "adapter_config.json": new TextEncoder().encode(
      JSON.stringify({ ...config, trainable_token_indices: { embed_tokens: [5, 17, 5] } }),
    ),
    "adapter_model.safetensors": serializeSafetensors(tensors),
  });
  const base = await loadBaseModel(fixture("llama-tiny"), { device: "wasm" });
  await assert.rejects(
    fromPretrained(base, source, { isTrainable: true, ...quiet }),
    (e) => e instanceof UnsupportedError && /repeated token id/.test(e.message),
  );
  const frozen = await fromPretrained(base, source, quiet);
  await frozen.release();
  await base.release();
});
