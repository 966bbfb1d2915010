/**
 * Creating onnxruntime-web sessions from (possibly patched) ONNX models, on
 * the device chosen at load. onnxruntime-web cannot swap a session's
 * weights, so every merged adapter gets a session of its own built from the
 * patched model bytes.
 *
 * On `"webgpu"` the sessions come from onnxruntime-web's WebGPU build
 * (imported on first use only) and keep the KV cache on the GPU: their
 * `present.*` outputs are GPU tensors (`location: "gpu-buffer"`) that the
 * generation loop feeds back as `past_key_values.*` without a copy; `logits`
 * stay on the CPU.
 *
 * On `"native"` they come from onnxruntime-node (CPU execution provider,
 * `numThreads` as `intraOpNumThreads`; see `native_session.ts`), which is
 * imported only then.
 * @module
 */
import type { ModelProto } from "../deps/onnx_proto.ts";
import { type InferenceSession, ort } from "../deps/ort.ts";
import { loadOrtWebGpu } from "../deps/ort_webgpu.ts";
import { OnnxModelError, UnsupportedError } from "../errors.ts";
import { encodeModel } from "../onnx/model_file.ts";
import { type ModelSession, queueFor, serialSession } from "./model_session.ts";
import { chooseDevice, type Device, type DeviceOption } from "../webgpu/device.ts";
import {
  applyRuntimeSettings,
  markStarted,
  resolveRuntimeOptions,
  type RuntimeOptions,
  type RuntimeSettings,
} from "./runtime_options.ts";
import { isServerRuntime } from "../runtime/threads.ts";
import { createNativeSession, loadNativeOrt, nativeSessionOptions } from "./native_session.ts";
import { freeNow, rangeBytes, rangeFileOf, wholeBytes } from "../storage/range_bytes.ts";

/** onnxruntime-web's `executionProviders` session option. */
export type ExecutionProviders = InferenceSession.SessionOptions["executionProviders"];

/**
 * Where a caller wants sessions to run (the options of `loadBaseModel`).
 *
 * Precedence: explicit `executionProviders` (or
 * `sessionOptions.executionProviders`) win and are passed to onnxruntime
 * unchanged; then `device` is not probed but follows them (`"webgpu"` when
 * they name `"webgpu"`, which loads the WebGPU build; `"native"` when
 * `device: "native"` is asked for, which hands them to onnxruntime-node;
 * else `"wasm"`).
 * Without them, `device` decides (default `"auto"`).
 * The {@linkcode RuntimeOptions} (`wasmPaths`, `numThreads`, ...) go to
 * onnxruntime-web's process-wide `env.wasm` (see `runtime_options.ts`).
 *
 * @example
 * ```ts
 * import type { SessionChoice } from "./session.ts";
 * const choice: SessionChoice = { device: "webgpu" };
 * ```
 */
export interface SessionChoice extends RuntimeOptions {
  /**
   * `"auto"` (default): WebGPU when `navigator.gpu` gives a hardware
   * (non-fallback) adapter, else WASM. `"webgpu"`: any adapter, software
   * ones included; `DeviceUnavailableError` when there is none. `"wasm"`:
   * onnxruntime's WASM SIMD build. `"native"`: onnxruntime-node's CPU
   * execution provider (an optional peer dependency; Node, Bun, Deno with
   * `--allow-ffi`); `DeviceUnavailableError` where it cannot load.
   */
  device?: DeviceOption;
  /** onnxruntime execution providers; when given they win over `device`. */
  executionProviders?: ExecutionProviders;
  /** Further onnxruntime session options. */
  sessionOptions?: InferenceSession.SessionOptions;
}

/** Session settings a model was loaded with, reused for its adapters. */
export interface SessionSettings {
  executionProviders?: ExecutionProviders;
  sessionOptions?: InferenceSession.SessionOptions;
  /**
   * Where sessions run (default `"wasm"`); `"webgpu"` uses onnxruntime-web's WebGPU build, `"native"`
   * onnxruntime-node.
   */
  device?: Device;
  /** onnxruntime-web's WebAssembly settings and the precompiled modules; default: resolved from `{}`. */
  runtime?: RuntimeSettings;
}

function namesWebGpu(providers: ExecutionProviders): boolean {
  return (providers ?? []).some((ep) => (typeof ep === "string" ? ep : ep.name) === "webgpu");
}

/**
 * Resolves a {@linkcode SessionChoice} into settings: picks the device and,
 * on WebGPU, keeps `present.*` outputs on the GPU (unless
 * `sessionOptions.preferredOutputLocation` is given) and quiets onnxruntime's
 * per-session node-placement warning (unless `logSeverityLevel` is given).
 *
 * @param outputNames The model's output names (from its graph).
 * @throws {DeviceUnavailableError} for `device: "webgpu"` without an adapter, or `"native"` where
 * onnxruntime-node cannot be loaded.
 * @example
 * ```ts
 * import { sessionSettings } from "./session.ts";
 * const settings = await sessionSettings({ device: "auto" }, ["logits", "present.0.key"]);
 * console.log(settings.device); // "wasm" unless a hardware GPU adapter is present
 * ```
 */
export async function sessionSettings(choice: SessionChoice, outputNames: readonly string[]): Promise<SessionSettings> {
  const { executionProviders, sessionOptions } = choice;
  const explicit = executionProviders ?? sessionOptions?.executionProviders;
  const runtime = await resolveRuntimeOptions(choice);
  const device: Device = explicit
    ? (namesWebGpu(explicit) ? "webgpu" : choice.device === "native" ? "native" : "wasm")
    : await chooseDevice(choice.device ?? "auto");
  // Loaded here, so a model asking for it fails at load with the reason, not at its first session.
  if (device === "native") await loadNativeOrt();
  if (device !== "webgpu") return { executionProviders, sessionOptions, device, runtime };
  const kvOnGpu = Object.fromEntries(
    outputNames.filter((name) => name.startsWith("present")).map((name) => [name, "gpu-buffer" as const]),
  );
  return {
    executionProviders,
    device,
    runtime,
    sessionOptions: {
      logSeverityLevel: 3,
      ...sessionOptions,
      preferredOutputLocation: sessionOptions?.preferredOutputLocation ?? kvOnGpu,
    },
  };
}

/**
 * Sessions of external-data weights (every loaded base: inline weights are
 * handed over as external data too) are made without MatMul pre-packing,
 * unless the caller set `disable_prepacking` itself (`"0"` turns it back
 * on). Pre-packing keeps a second, packed copy of every MatMul weight:
 * measured on the SmolLM2-135M shape, base RSS 1.76x the weights with it,
 * 1.41x without. The price is speed: on one thread a decode step takes
 * 1.45x as long without it, an 8-row step 1.79x (MLAS packs an unpacked
 * weight on every call).
 */
function withoutPrepacking(
  options: InferenceSession.SessionOptions,
): InferenceSession.SessionOptions {
  const session = (options.extra as { session?: Record<string, string> } | undefined)?.session;
  if (!options.externalData?.length || session?.disable_prepacking) return options;
  return { ...options, extra: { ...options.extra, session: { ...session, disable_prepacking: "1" } } };
}

/**
 * Commits a load's onnxruntime-web settings (`numThreads`, `wasmPaths`, ...) to
 * the WASM build's process-wide `env` when the load happens, not at its first
 * session (a base's session is made on first use): a later load asking for
 * others fails at load with `UnsupportedError`, as when sessions were made at
 * load. WebGPU and native sessions take their settings when they are made.
 *
 * @throws {UnsupportedError} when other settings are already in force.
 * @example
 * ```ts
 * import { commitRuntimeSettings, sessionSettings } from "./session.ts";
 * await commitRuntimeSettings(await sessionSettings({ device: "wasm" }, ["logits"]));
 * ```
 */
export async function commitRuntimeSettings(settings: SessionSettings): Promise<void> {
  if ((settings.device ?? "wasm") !== "wasm") return;
  await queueFor(ort).push(async () => {
    applyRuntimeSettings(ort.env, settings.runtime ?? await resolveRuntimeOptions({}));
    markStarted(ort.env);
  });
}

/**
 * Builds a session from a decoded model and its external data files, on
 * `settings.device`.
 *
 * @example
 * ```ts
 * import { readFile } from "node:fs/promises";
 * import { createSession, sessionSettings } from "./session.ts";
 * const bytes = new Uint8Array(await readFile("tests/fixtures/llama-tiny/onnx/model.onnx"));
 * const settings = await sessionSettings({ device: "wasm" }, ["logits"]);
 * const session = await createSession(bytes, new Map(), settings, "onnx/model.onnx");
 * ```
 */
export async function createSession(
  model: ModelProto | Uint8Array,
  externalData: ReadonlyMap<string, Uint8Array>,
  settings: SessionSettings,
  file: string,
): Promise<ModelSession> {
  const bytes = model instanceof Uint8Array ? model : encodeModel(model);
  const device = settings.device ?? "wasm";
  if (device === "native") return await nativeSession(bytes, externalData, settings, file);
  const options: InferenceSession.SessionOptions = {
    ...settings.sessionOptions,
    executionProviders: settings.executionProviders ?? settings.sessionOptions?.executionProviders ?? [device],
  };
  const mounted = mountable(externalData, device);
  if (externalData.size > 0) options.externalData = mounted.files;
  try {
    const runtime = device === "webgpu" ? await loadOrtWebGpu() : ort;
    const queue = queueFor(runtime);
    // Settings are checked and written, and the first session created, inside
    // the build's queue, so two first loads cannot race on its env.
    const session = await queue.push(async () => {
      const wanted = settings.runtime ?? await resolveRuntimeOptions({});
      // The WebGPU build is onnxruntime-web's browser bundle: outside browsers it cannot start thread workers
      // (it spawns them from blob: module URLs), and the GPU does the work anyway.
      const single = device === "webgpu" && isServerRuntime();
      applyRuntimeSettings(runtime.env, single ? { ...wanted, numThreads: 1, threadsRequested: false } : wanted);
      const created = await runtime.InferenceSession.create(bytes, withoutPrepacking(options));
      markStarted(runtime.env);
      return created;
    });
    return serialSession(session, queue);
  } catch (cause) {
    if (cause instanceof UnsupportedError) throw cause;
    // onnxruntime reports a failed read of mounted bytes only as a failed load: the read's own error says why.
    if (mounted.failure) throw mounted.failure;
    throw new OnnxModelError(`onnxruntime could not create a session: ${(cause as Error).message ?? cause}`, {
      file,
      cause,
    });
  } finally {
    freeNow(mounted.scratch.bytes);
  }
}

interface Mounted {
  files: { path: string; data: Uint8Array }[];
  /** The buffer reads on the CPU share; freed once the session is made. */
  scratch: { bytes: Uint8Array };
  failure?: unknown;
}

/**
 * External data as onnxruntime-web mounts it. Bytes read from their file
 * range by range ({@linkcode rangeBytes}) stay so: its C++ side (1.30)
 * copies each initializer's `subarray(offset, offset + length)` into its
 * heap at once, so on the CPU one buffer serves every read and the file is
 * never whole in JavaScript (WebGPU gets a buffer per read: uploads may hold
 * theirs). `failure` is the first error a read threw (onnxruntime only
 * says that the load failed).
 */
function mountable(
  externalData: ReadonlyMap<string, Uint8Array>,
  device: Device,
): Mounted {
  const mounted: Mounted = { files: [], scratch: { bytes: new Uint8Array(0) } };
  for (const [path, data] of externalData) {
    const file = rangeFileOf(data);
    if (!file) {
      mounted.files.push({ path, data });
      continue;
    }
    const checked = {
      size: file.size,
      readAll: () => file.readAll(),
      readInto(offset: number, into: Uint8Array) {
        try {
          file.readInto(offset, into);
        } catch (error) {
          mounted.failure ??= error;
          throw error;
        }
      },
    };
    mounted.files.push({ path, data: rangeBytes(checked, path, device === "wasm" ? { reuse: mounted.scratch } : {}) });
  }
  return mounted;
}

async function nativeSession(
  bytes: Uint8Array,
  externalData: ReadonlyMap<string, Uint8Array>,
  settings: SessionSettings,
  file: string,
): Promise<ModelSession> {
  const runtime = await loadNativeOrt();
  const threads = (settings.runtime ?? await resolveRuntimeOptions({})).numThreads;
  const options = nativeSessionOptions(
    {
      ...settings.sessionOptions,
      executionProviders: settings.executionProviders ?? settings.sessionOptions?.executionProviders,
    },
    threads,
  );
  // onnxruntime-node takes whole buffers.
  if (externalData.size > 0) {
    options.externalData = [...externalData].map(([path, data]) => ({ path, data: wholeBytes(data) }));
  }
  try {
    return await createNativeSession(runtime, bytes, options);
  } catch (cause) {
    throw new OnnxModelError(`onnxruntime-node could not create a session: ${(cause as Error).message ?? cause}`, {
      file,
      cause,
    });
  }
}
