// Choosing the device: "auto" takes WebGPU only for a hardware adapter,
// "webgpu" forces any adapter and fails clearly without one, explicit
// executionProviders win. Runs everywhere: fakes stand in for navigator.gpu,
// and the real runtime is checked as it is (Bun: no navigator.gpu; Deno in CI:
// a software adapter).
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { DeviceUnavailableError, loadBaseModel, Tensor, UnsupportedError } from "../mod.ts";
import {
  chooseDevice,
  type DeviceOption,
  type GpuLike,
  isFallbackAdapter,
  probeWebGpu,
  runtimeGpu,
} from "../src/webgpu/device.ts";
import { WebGpuContext } from "../src/webgpu/context.ts";
import { uploadToOrtGpu } from "../src/webgpu/ort_tensors.ts";
import { sessionSettings } from "../src/model/session.ts";

const llama = fileURLToPath(new URL("./fixtures/llama-tiny", import.meta.url));
const probe = await probeWebGpu();
/** What "auto" must pick on this machine. */
const autoHere = probe.adapter && !probe.isFallbackAdapter ? "webgpu" : "wasm";

/** A fake navigator.gpu with one adapter (or none). */
function fakeGpu(adapter: { fallback: boolean; old?: boolean } | null): GpuLike & { calls: number } {
  const gpu = {
    calls: 0,
    requestAdapter() {
      gpu.calls++;
      if (!adapter) return Promise.resolve(null);
      const fake = adapter.old
        ? { isFallbackAdapter: adapter.fallback } // the older spec: on the adapter itself
        : { info: { isFallbackAdapter: adapter.fallback, description: "fake" } };
      return Promise.resolve(fake as unknown as GPUAdapter);
    },
  };
  return gpu;
}

test('"auto" takes WebGPU only for a hardware adapter; "webgpu" takes any adapter; "wasm" never probes', async () => {
  const cases: [GpuLike | null, DeviceOption, string][] = [
    [fakeGpu({ fallback: false }), "auto", "webgpu"],
    [fakeGpu({ fallback: false, old: true }), "auto", "webgpu"],
    [fakeGpu({ fallback: true }), "auto", "wasm"],
    [fakeGpu({ fallback: true, old: true }), "auto", "wasm"],
    [fakeGpu(null), "auto", "wasm"],
    [null, "auto", "wasm"],
    [fakeGpu({ fallback: true }), "webgpu", "webgpu"],
    [fakeGpu({ fallback: false }), "webgpu", "webgpu"],
    [fakeGpu({ fallback: false }), "wasm", "wasm"],
  ];
  for (const [gpu, option, device] of cases) assert.equal(await chooseDevice(option, gpu), device, option);
  const unused = fakeGpu({ fallback: false });
  await chooseDevice("wasm", unused);
  assert.equal(unused.calls, 0);
  assert.equal(isFallbackAdapter({ info: { isFallbackAdapter: true } } as unknown as GPUAdapter), true);
});

test('"webgpu" without an adapter or without navigator.gpu fails with DeviceUnavailableError', async () => {
  const noAdapter = chooseDevice("webgpu", fakeGpu(null));
  await assert.rejects(noAdapter, DeviceUnavailableError);
  await assert.rejects(
    noAdapter,
    /device "webgpu" is not available: navigator\.gpu\.requestAdapter\(\) returned no adapter/,
  );
  await assert.rejects(chooseDevice("webgpu", null), /this runtime has no navigator\.gpu/);
  const failing: GpuLike = { requestAdapter: () => Promise.reject(new Error("driver crashed")) };
  await assert.rejects(chooseDevice("webgpu", failing), /requestAdapter\(\) failed: driver crashed/);
  assert.ok(new DeviceUnavailableError("x") instanceof UnsupportedError);
  await assert.rejects(new WebGpuContext(fakeGpu(null)).device(), DeviceUnavailableError);
});

test("an unknown device value is an UnsupportedError naming the choices", async () => {
  await assert.rejects(chooseDevice("cuda" as DeviceOption), (e: unknown) => {
    assert.ok(e instanceof UnsupportedError);
    assert.match((e as Error).message, /device: device must be "auto", "webgpu", "wasm" or "native", got "cuda"/);
    return true;
  });
});

test(`"auto" picks ${autoHere} here (${probe.adapter ? probe.description : "no adapter"}), and loadBaseModel reports it`, async () => {
  assert.equal(await chooseDevice("auto"), autoHere);
  const base = await loadBaseModel(llama);
  assert.equal(base.device, autoHere);
  await base.release();
  const wasm = await loadBaseModel(llama, { device: "wasm" });
  assert.equal(wasm.device, "wasm");
  await wasm.release();
});

test('"auto" picks WASM on a software (fallback) adapter', {
  skip: probe.adapter && probe.isFallbackAdapter ? false : "no software adapter here",
}, async () => {
  assert.equal(await chooseDevice("auto"), "wasm");
});

test('loadBaseModel with device "webgpu" fails clearly where the runtime has no WebGPU', {
  skip: runtimeGpu() ? "this runtime has navigator.gpu" : false,
}, async () => {
  await assert.rejects(loadBaseModel(llama, { device: "webgpu" }), (e: unknown) => {
    assert.ok(e instanceof DeviceUnavailableError);
    assert.equal((e as DeviceUnavailableError).key, "device");
    assert.match((e as Error).message, /device "webgpu" is not available: this runtime has no navigator\.gpu/);
    return true;
  });
});

test("explicit executionProviders win over device, and WebGPU settings keep present.* on the GPU", async () => {
  const gpu = fakeGpu(null); // would fail "webgpu" if it were asked
  const settings = await sessionSettings({ device: "webgpu", executionProviders: ["wasm"] }, ["logits"]);
  assert.equal(settings.device, "wasm");
  assert.deepEqual(settings.executionProviders, ["wasm"]);
  assert.equal(gpu.calls, 0);
  const viaOptions = await sessionSettings({
    device: "wasm",
    sessionOptions: { executionProviders: [{ name: "webgpu" }] },
  }, [
    "logits",
    "present.0.key",
    "present.0.value",
  ]);
  assert.equal(viaOptions.device, "webgpu");
  assert.deepEqual(viaOptions.sessionOptions?.preferredOutputLocation, {
    "present.0.key": "gpu-buffer",
    "present.0.value": "gpu-buffer",
  });
  const own = await sessionSettings({
    executionProviders: ["webgpu"],
    sessionOptions: { preferredOutputLocation: "cpu" },
  }, ["logits"]);
  assert.equal(own.sessionOptions?.preferredOutputLocation, "cpu");
  // The WASM path passes the caller's options through untouched.
  const sessionOptions = { graphOptimizationLevel: "all" as const };
  const { runtime: _runtime, ...wasmSettings } = await sessionSettings({ device: "wasm", sessionOptions }, [
    "logits",
    "present.0.key",
  ]);
  assert.deepEqual(wasmSettings, {
    executionProviders: undefined,
    sessionOptions,
    device: "wasm",
  });
  const base = await loadBaseModel(llama, { device: "webgpu", executionProviders: ["wasm"] });
  assert.equal(base.device, "wasm");
  await base.release();
});

test("uploadToOrtGpu refuses what a GPU buffer cannot hold before loading anything", async () => {
  await assert.rejects(uploadToOrtGpu(new Tensor("string", ["a"], [1])), UnsupportedError);
  await assert.rejects(uploadToOrtGpu(new Tensor("float32", new Float32Array(0), [0])), /empty tensor/);
});
