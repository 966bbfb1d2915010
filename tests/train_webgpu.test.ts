// Training on onnxruntime-web's WebGPU build (in CI: Mesa's lavapipe under
// Deno), against the same PyTorch + PEFT reference as tests/train.test.ts.
// Skipped where WebGPU has no adapter (Bun, Node, Deno without a driver).
// Observed on lavapipe: loss and grad norm within 2e-7 relative.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fromPretrained, loadBaseModel } from "../mod.ts";
import { probeWebGpu } from "../src/webgpu/mod.ts";
import { fixture } from "./support/fixtures.ts";
import { reference, relDiff, safetensorsAt, tempDir, tensorRelDiff, trainCase } from "./support/train.ts";

const { adapter, description } = await probeWebGpu();
const skip = adapter ? false : `no WebGPU adapter: ${description}`;

// Plain LoRA; trained biases (branch bias inputs and norm deltas); a whole lm_head (modules_to_save).
for (const name of ["llama-qv-sgd", "gpt2-bias-all-adamw", "llama-qv-lmhead-adamw"]) {
  test(`${name} trains on WebGPU to PyTorch's losses, grad norms and tensors`, { skip }, async () => {
    const ref = await reference(name);
    const base = await loadBaseModel(fixture(ref.base), { device: "webgpu" });
    assert.equal(base.device, "webgpu");
    const model = await fromPretrained(base, trainCase(name, "start"), { isTrainable: true, onWarning: () => {} });
    const trainer = model.trainer(ref.trainer);
    for (const [i, batch] of ref.batches.entries()) {
      const r = await trainer.step(batch);
      assert.ok(relDiff(r.loss, ref.calls[i].loss) < 1e-4, `call ${i}: loss ${r.loss} vs ${ref.calls[i].loss}`);
      assert.ok(relDiff(r.gradNorm!, ref.calls[i].gradNorm!) < 1e-4, `call ${i}: grad norm ${r.gradNorm}`);
    }
    const out = await tempDir();
    await model.savePretrained(out);
    const ours = await safetensorsAt(`${out}/adapter_model.safetensors`);
    const theirs = await safetensorsAt(trainCase(name, "end", "adapter_model.safetensors"));
    for (const key of theirs.names()) assert.ok(tensorRelDiff(ours.toFloat32(key), theirs.toFloat32(key)) < 1e-4, key);
    await model.release();
    await base.release();
  });
}
