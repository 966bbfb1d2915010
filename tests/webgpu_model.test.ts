// Models on WebGPU, forced with device: "webgpu" (in CI: Mesa's lavapipe
// software adapter under Deno). Skipped where WebGPU has no adapter (Bun,
// Node, Deno without a driver).
//
// Logits tolerance: 1e-4 absolute, as for WASM. The expected logits come from
// PyTorch float32 (|logits| <= 2.2); the WebGPU kernels compute the same
// float32 math with other reduction orders (tiled matmuls, workgroup
// reductions in softmax/layer norm) and WGSL's exp/tanh, which are not
// correctly rounded. Observed on lavapipe: at most 1.5e-5 (llama rsLoRA F16,
// prefill), 7x inside the tolerance; a wrong adapter weight moves logits by
// more than 0.01 (see from_pretrained.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { fromPretrained, loadBaseModel, Tensor } from "../mod.ts";
import { probeWebGpu, uploadToOrtGpu } from "../src/webgpu/mod.ts";
import { ADAPTERS, expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";
import { countGpuDevices } from "./support/gpu_devices.ts";
import { baseNamed, comparedDiff, realExpected, type RealManifest } from "./support/real_fixtures.ts";

const { adapter, description } = await probeWebGpu();
const skip = adapter ? false : `no WebGPU adapter: ${description}`;
const ATOL = 1e-4;
const demo = (p: string) => fileURLToPath(new URL(`../examples/demo/${p}`, import.meta.url));

for (const name of ["llama-tiny", "gpt2-tiny"]) {
  test(`base ${name} on WebGPU gives its expected logits and keeps the KV cache on the GPU`, { skip }, async () => {
    const base = await loadBaseModel(fixture(name), { device: "webgpu" });
    assert.equal(base.device, "webgpu");
    const e = await expected(name);
    const out = await prefillAndStep(base, e);
    assert.ok(maxAbsDiff(out.logits, e.logits) < ATOL, `prefill max diff ${maxAbsDiff(out.logits, e.logits)}`);
    assert.ok(
      maxAbsDiff(out.nextLogits, e.nextLogits) < ATOL,
      `decode max diff ${maxAbsDiff(out.nextLogits, e.nextLogits)}`,
    );

    // One run by hand: present.* come back as GPU buffers, logits on the CPU.
    const c = base.config as Record<string, number>;
    const heads = c.num_key_value_heads ?? c.num_attention_heads ?? c.n_head;
    const headDim = (c.hidden_size ?? c.n_embd) / (c.num_attention_heads ?? c.n_head);
    const feeds: Record<string, Tensor> = {
      input_ids: new Tensor("int64", new BigInt64Array([1n, 2n]), [1, 2]),
      attention_mask: new Tensor("int64", new BigInt64Array([1n, 1n]), [1, 2]),
      position_ids: new Tensor("int64", new BigInt64Array([0n, 1n]), [1, 2]),
    };
    for (const input of base.inputNames.filter((n) => n.startsWith("past_key_values."))) {
      feeds[input] = new Tensor("float32", new Float32Array(), [1, heads, 0, headDim]);
    }
    const outputs = await base.run(feeds);
    assert.equal(outputs.logits.location, "cpu");
    const presents = Object.entries(outputs).filter(([n]) => n.startsWith("present"));
    assert.ok(presents.length > 0);
    for (const [n, t] of presents) {
      assert.equal(t.location, "gpu-buffer", n);
      assert.deepEqual([...t.dims], [1, heads, 2, headDim], n);
      const data = await t.getData(true); // copies back and frees the GPU buffer
      assert.equal(data.length, heads * 2 * headDim);
    }
    await base.release();
  });
}

test("feeds uploaded once to onnxruntime's GPU device are reused across runs without a copy", { skip }, async () => {
  const base = await loadBaseModel(fixture("llama-tiny"), { device: "webgpu" });
  const e = await expected("llama-tiny");
  const n = e.inputIds.length;
  const cpu: Record<string, Tensor> = {
    input_ids: new Tensor("int64", e.inputIds, [1, n]),
    attention_mask: new Tensor("int64", new BigInt64Array(n).fill(1n), [1, n]),
    position_ids: new Tensor("int64", BigInt64Array.from({ length: n }, (_, i) => BigInt(i)), [1, n]),
  };
  const gpu: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(cpu)) gpu[name] = await uploadToOrtGpu(t);
  assert.ok(Object.values(gpu).every((t) => t.location === "gpu-buffer"));
  const c = base.config as Record<string, number>;
  for (let run = 0; run < 2; run++) {
    const feeds: Record<string, Tensor> = { ...gpu };
    for (const input of base.inputNames.filter((name) => name.startsWith("past_key_values."))) {
      feeds[input] = new Tensor("float32", new Float32Array(), [
        1,
        c.num_key_value_heads,
        0,
        c.hidden_size / c.num_attention_heads,
      ]);
    }
    const out = await base.run(feeds);
    assert.ok(maxAbsDiff(out.logits.data as Float32Array, e.logits) < ATOL, `run ${run}`);
    for (const [name, t] of Object.entries(out)) if (name !== "logits") t.dispose();
  }
  for (const t of Object.values(gpu)) t.dispose();
  await base.release();
});

for (const mode of ["merged", "dynamic"] as const) {
  for (const [adapterName, baseName] of ADAPTERS) {
    test(`adapter ${adapterName} on WebGPU gives its expected logits (${mode})`, { skip }, async () => {
      const base = await loadBaseModel(fixture(baseName), { device: "webgpu" });
      try {
        const model = await fromPretrained(base, fixture(adapterName), { mode });
        // Merging on a WebGPU device runs the WGSL kernels.
        assert.equal(model.mergeBackend, "webgpu");
        const e = await expected(adapterName);
        const out = await prefillAndStep(model, e);
        assert.ok(maxAbsDiff(out.logits, e.logits) < ATOL, `prefill max diff ${maxAbsDiff(out.logits, e.logits)}`);
        assert.ok(
          maxAbsDiff(out.nextLogits, e.nextLogits) < ATOL,
          `decode max diff ${maxAbsDiff(out.nextLogits, e.nextLogits)}`,
        );
        await model.release();
      } finally {
        await base.release();
      }
    });
  }
}

test("greedy demo generation on WebGPU reproduces the reference bytes (base and adapter)", { skip }, async () => {
  const reference = JSON.parse(await readFile(demo("reference_generations.json"), "utf8"));
  const base = await loadBaseModel(demo("byte-llama"), { device: "webgpu" });
  const model = await fromPretrained(base, demo("byte-llama-python-lora"));
  for (const prompt of ["def ", "The "]) {
    for (const [variant, lm] of [["base", base], ["adapter", model]] as const) {
      const ref = reference.generations.find((g: { prompt: string; variant: string }) =>
        g.prompt === prompt && g.variant === variant
      );
      const result = await lm.generate(prompt, { maxNewTokens: 120, temperature: 0 });
      const differing = result.tokenIds.filter((id, i) => id !== ref.generated_ids[i]).length;
      assert.equal(differing, 0, `${variant} ${JSON.stringify(prompt)}: ${differing} of 120 bytes differ`);
      assert.deepEqual(result.tokenIds, ref.generated_ids);
    }
  }
  // A stream abandoned early frees its GPU cache; the next generation is unaffected.
  const pieces = model.stream("def ", { maxNewTokens: 120, temperature: 0 });
  let text = "";
  for await (const piece of pieces) {
    text += piece;
    if (text.length >= 10) break;
  }
  const ref = reference.generations.find((g: { prompt: string; variant: string }) =>
    g.prompt === "def " && g.variant === "adapter"
  );
  assert.equal(text, new TextDecoder().decode(new Uint8Array(ref.generated_ids.slice(0, text.length))));
  const again = await model.generate("def ", { maxNewTokens: 20, temperature: 0 });
  assert.deepEqual(again.tokenIds, ref.generated_ids.slice(0, 20));
  await model.release();
  await base.release();
});

test(
  "a WebGPU base requests one GPUDevice for the kernels of all its adapters and destroys it on release",
  { skip },
  async () => {
    const base = await loadBaseModel(fixture("llama-tiny"), { device: "webgpu" });
    const { requested, destroyed } = await countGpuDevices(async () => {
      const merged = await fromPretrained(base, fixture("llama-tiny-lora-qv"), { mode: "merged" });
      await merged.loadAdapter(fixture("llama-tiny-lora-mlp-b"), "mlp");
      const other = await fromPretrained(base, fixture("llama-tiny-dora-qv"), { mode: "merged" });
      const e = await expected("llama-tiny-dora-qv");
      assert.ok(maxAbsDiff((await prefillAndStep(other, e)).logits, e.logits) < ATOL); // merged with the shared device
      for (const m of [merged, other]) await m.release();
      await base.release();
    });
    assert.equal(requested, 1);
    assert.equal(destroyed, 1);
  },
);

test(
  "dynamic mode on WebGPU: branches no active adapter uses (rank 0 on the CPU) and a bias-only module run",
  { skip },
  async () => {
    // Two adapters on different modules: running one leaves the other's branches off.
    const base = await loadBaseModel(fixture("llama-tiny"), { device: "webgpu" });
    try {
      const model = await fromPretrained(base, fixture("llama-tiny-lora-qv"), { adapterName: "qv" });
      await model.loadAdapter(fixture("llama-tiny-lora-mlp-b"), "mlp");
      for (const name of ["qv", "mlp"]) {
        model.setAdapter(name);
        const e = await expected(`llama-tiny-lora-${name === "qv" ? "qv" : "mlp-b"}`);
        const out = await prefillAndStep(model, e);
        assert.ok(
          maxAbsDiff(out.logits, e.logits) < ATOL,
          `${name}: prefill max diff ${maxAbsDiff(out.logits, e.logits)}`,
        );
      }
      await model.release();
    } finally {
      await base.release();
    }
    // bias="all" on GPT-2: c_proj has a trained bias and no LoRA (a branch whose A and B are empty).
    const real = (p: string) => fileURLToPath(new URL(`./fixtures/real/${p}`, import.meta.url));
    const m = JSON.parse(await readFile(real("manifest.json"), "utf8")) as RealManifest;
    const gpt2 = baseNamed(m, "gpt2-torchscript");
    const gpt2Base = await loadBaseModel(real(gpt2.path), { device: "webgpu" });
    try {
      const adapter = m.adapters.find((a) => a.name === "gpt2-bias-all")!;
      const model = await fromPretrained(gpt2Base, real(adapter.path), { onWarning: () => {} });
      const e = await realExpected(adapter.path, gpt2.inputs);
      const out = await model.run(e.feeds);
      const diff = comparedDiff(gpt2, e, out.logits.data as Float32Array);
      assert.ok(diff < ATOL, `gpt2-bias-all: max diff ${diff}`);
      await model.release();
    } finally {
      await gpt2Base.release();
    }
  },
);
