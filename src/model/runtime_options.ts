/**
 * onnxruntime-web's WebAssembly settings (`env.wasm`) as options of
 * `loadBaseModel`, and the precompiled modules that runtimes which forbid
 * compiling WebAssembly at run time (Cloudflare's workerd) need.
 *
 * onnxruntime-web keeps these settings in one `env` object per build (the
 * WASM build and the WebGPU build each have their own), and reads them once,
 * when that build creates its first session: later changes do nothing. So
 * the first `loadBaseModel` of a process (per build) decides them; a later
 * load that asks for different values gets an `UnsupportedError` instead of
 * being silently ignored, and a load that leaves an option out accepts
 * whatever is in force.
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import { defaultNumThreads } from "../runtime/threads.ts";

/** A URL prefix for onnxruntime's files, or the URLs of its `.mjs` and `.wasm` files. */
export type WasmPaths = string | URL | { mjs?: string | URL; wasm?: string | URL };

/**
 * WebAssembly settings of `loadBaseModel`.
 *
 * @example
 * ```ts
 * import type { RuntimeOptions } from "./runtime_options.ts";
 * const options: RuntimeOptions = { wasmPaths: "/ort/", numThreads: 2 };
 * ```
 */
export interface RuntimeOptions {
  /**
   * Where onnxruntime-web fetches its `ort-wasm-simd-threaded*.{mjs,wasm}`
   * files (`env.wasm.wasmPaths`): a URL prefix ending in `/`, or the two file
   * URLs. Needed in bundles, whose folder does not hold those files.
   */
  wasmPaths?: WasmPaths;
  /**
   * WebAssembly threads (`env.wasm.numThreads`; with `device: "native"`,
   * onnxruntime-node's intra-op threads). Default: every core in Deno, Bun
   * and Node; in browsers every core when the page is cross-origin
   * isolated, else 1; 1 where there is no `SharedArrayBuffer`.
   */
  numThreads?: number;
  /**
   * The bytes of onnxruntime's `.wasm` file (`env.wasm.wasmBinary`), for
   * runtimes that should not fetch it. onnxruntime-web 1.30 compiles these
   * bytes itself; it cannot take a `WebAssembly.Module`.
   */
  wasmBinary?: ArrayBuffer | Uint8Array;
  /**
   * The LoRA kernel (`wasm/lora_kernel.wasm`) compiled ahead of time, for
   * runtimes that forbid compiling WebAssembly from bytes (workerd imports
   * `.wasm` files as modules). Without it, and where compiling is
   * forbidden, the TypeScript reference kernels run, and `onWarning` is
   * told so once.
   */
  kernelModule?: WebAssembly.Module;
  /** Receives warnings about the runtime (e.g. the kernel fallback). Default `console.warn`. */
  onWarning?: (message: string) => void;
}

/** Resolved settings: `numThreads` always set; `threadsRequested` says whether the caller chose it. */
export interface RuntimeSettings extends RuntimeOptions {
  numThreads: number;
  threadsRequested: boolean;
}

/**
 * Checks the options and fills in the default thread count.
 *
 * @throws {UnsupportedError} for a `numThreads` that is not a positive integer.
 * @example
 * ```ts
 * import { resolveRuntimeOptions } from "./runtime_options.ts";
 * const settings = await resolveRuntimeOptions({});
 * console.log(settings.numThreads >= 1); // true
 * ```
 */
export async function resolveRuntimeOptions(options: RuntimeOptions): Promise<RuntimeSettings> {
  const { numThreads } = options;
  if (numThreads !== undefined && !(Number.isInteger(numThreads) && numThreads >= 1 && numThreads <= 1024)) {
    throw new UnsupportedError(`must be a positive integer, got ${String(numThreads)}`, { key: "numThreads" });
  }
  return {
    wasmPaths: options.wasmPaths,
    numThreads: numThreads ?? await defaultNumThreads(),
    threadsRequested: numThreads !== undefined,
    wasmBinary: options.wasmBinary,
    kernelModule: options.kernelModule,
    onWarning: options.onWarning,
  };
}

/** The part of an onnxruntime-web build's `env` written here. */
export interface OrtEnvLike {
  wasm: {
    wasmPaths?: unknown;
    numThreads?: number;
    wasmBinary?: unknown;
  };
}

function samePaths(a: unknown, b: unknown): boolean {
  const norm = (p: unknown) =>
    p instanceof URL || typeof p === "string"
      ? String(p)
      : p && typeof p === "object"
      ? JSON.stringify({ mjs: String((p as { mjs?: unknown }).mjs), wasm: String((p as { wasm?: unknown }).wasm) })
      : p;
  return norm(a) === norm(b);
}

// Builds whose first session exists: their env is read and fixed. This mirrors
// onnxruntime-web's own process-wide state, like the run queues per build.
const started = new WeakSet<object>();

/**
 * Writes the settings into a build's `env.wasm` before its first session;
 * afterwards only checks that they agree with what is in force.
 *
 * @throws {UnsupportedError} naming the option when a started build runs with other values.
 * @example
 * ```ts
 * import { applyRuntimeSettings } from "./runtime_options.ts";
 * const env = { wasm: {} as { numThreads?: number } };
 * applyRuntimeSettings(env, { numThreads: 2, threadsRequested: true });
 * console.log(env.wasm.numThreads); // 2
 * ```
 */
export function applyRuntimeSettings(env: OrtEnvLike, settings: RuntimeSettings): void {
  const wasm = env.wasm;
  if (!started.has(env)) {
    if (settings.wasmPaths !== undefined) {
      const p = settings.wasmPaths;
      wasm.wasmPaths = p instanceof URL ? p.href : p;
    }
    if (settings.wasmBinary !== undefined) wasm.wasmBinary = settings.wasmBinary;
    wasm.numThreads = settings.numThreads;
    return;
  }
  const conflict = (key: string, inForce: unknown) => {
    throw new UnsupportedError(
      `onnxruntime-web reads its WebAssembly settings once per process, and this process already runs it with ${key} = ${
        String(inForce)
      }; load every model with the same ${key} (or leave it out)`,
      { key },
    );
  };
  if (settings.wasmPaths !== undefined && !samePaths(settings.wasmPaths, wasm.wasmPaths)) {
    conflict("wasmPaths", JSON.stringify(wasm.wasmPaths));
  }
  if (settings.wasmBinary !== undefined && settings.wasmBinary !== wasm.wasmBinary) {
    conflict("wasmBinary", "other bytes");
  }
  // onnxruntime writes the count it settled on back into env.wasm.numThreads.
  if (settings.threadsRequested && wasm.numThreads !== undefined && wasm.numThreads !== settings.numThreads) {
    conflict("numThreads", wasm.numThreads);
  }
}

/**
 * Records that a build created its first session: its `env` is now fixed,
 * and later settings are only checked against it.
 *
 * @example
 * ```ts
 * import { markStarted } from "./runtime_options.ts";
 * markStarted({ wasm: {} });
 * ```
 */
export function markStarted(env: OrtEnvLike): void {
  started.add(env);
}
