/**
 * The native backend (`device: "native"`): sessions on onnxruntime-node's
 * CPU execution provider, behind the same {@linkcode ModelSession} as the
 * onnxruntime-web ones, so graph surgery, feeds and generation are shared.
 *
 * At the session boundary: feeds go in as they are (onnxruntime-node reads
 * `type`, `dims` and `data` of any tensor object and wraps CPU data without
 * a copy), and each output, an onnxruntime-node `Tensor`, is wrapped in an
 * onnxruntime-web `Tensor` over the same typed array (no copy), so callers
 * see one `Tensor` class whatever the backend.
 * @module
 */
import { type InferenceSession, Tensor } from "../deps/ort.ts";
import { importOrtNode, type OrtNode } from "../deps/ort_node.ts";
import { DeviceUnavailableError } from "../errors.ts";
import { nativeAddonsBlocked } from "../runtime/native_addons.ts";
import { type ModelSession, queueFor } from "./model_session.ts";

/**
 * Loads onnxruntime-node, or says why it cannot.
 *
 * @param load The importer (tests pass a failing one).
 * @param blocked Why native addons cannot load here, if so (default: asks the runtime).
 * @throws {DeviceUnavailableError} where native addons are not allowed, or onnxruntime-node is missing or fails to load.
 * @example
 * ```ts
 * import { loadNativeOrt } from "./native_session.ts";
 * const ortNode = await loadNativeOrt(); // in Deno: needs --allow-ffi
 * console.log(typeof ortNode.InferenceSession.create);
 * ```
 */
export async function loadNativeOrt(
  load: () => Promise<OrtNode> = importOrtNode,
  blocked: string | undefined = nativeAddonsBlocked(),
): Promise<OrtNode> {
  const hint = 'use device "wasm" (or "auto")';
  if (blocked !== undefined) {
    throw new DeviceUnavailableError(`device "native" is not available: ${blocked}; ${hint}`, { key: "device" });
  }
  try {
    return await load();
  } catch (cause) {
    throw new DeviceUnavailableError(
      `device "native" is not available: onnxruntime-node@1.30.0 (an optional peer dependency) could not be loaded ` +
        `(${(cause as Error)?.message ?? cause}); install it beside peft-edge, or ${hint}`,
      { key: "device", cause },
    );
  }
}

/**
 * onnxruntime-node's session options from onnxruntime-web's: the CPU
 * execution provider unless others are named, and `numThreads` as
 * `intraOpNumThreads` unless the caller set that.
 *
 * @example
 * ```ts
 * import { nativeSessionOptions } from "./native_session.ts";
 * console.log(nativeSessionOptions({}, 4)); // { executionProviders: ["cpu"], intraOpNumThreads: 4 }
 * ```
 */
export function nativeSessionOptions(
  options: InferenceSession.SessionOptions,
  numThreads: number,
): InferenceSession.SessionOptions {
  return {
    ...options,
    executionProviders: options.executionProviders ?? ["cpu"],
    intraOpNumThreads: options.intraOpNumThreads ?? numThreads,
  };
}

/** An onnxruntime-node output as an onnxruntime-web `Tensor` over the same data. */
function webTensor(value: unknown): unknown {
  const t = value as { type?: Tensor.Type; data?: Tensor.DataType; dims?: readonly number[] };
  if (t.type === undefined || t.data === undefined || t.dims === undefined) return value;
  return new Tensor(t.type, t.data as Float32Array, t.dims);
}

/**
 * Creates a session on onnxruntime-node: runs go through the native build's
 * queue (onnxruntime-node runs synchronously on the JavaScript thread, so
 * they never overlap anyway) and return onnxruntime-web tensors.
 *
 * @example
 * ```ts
 * import { readFile } from "node:fs/promises";
 * import { createNativeSession, loadNativeOrt, nativeSessionOptions } from "./native_session.ts";
 * const bytes = new Uint8Array(await readFile("tests/fixtures/llama-tiny/onnx/model.onnx"));
 * const session = await createNativeSession(await loadNativeOrt(), bytes, nativeSessionOptions({}, 2));
 * console.log(session.outputNames);
 * await session.release();
 * ```
 */
export async function createNativeSession(
  runtime: OrtNode,
  bytes: Uint8Array,
  options: InferenceSession.SessionOptions,
): Promise<ModelSession> {
  const session = await runtime.InferenceSession.create(
    bytes,
    options as Parameters<typeof runtime.InferenceSession.create>[1],
  );
  const queue = queueFor(runtime);
  let released: Promise<void> | undefined;
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    run: (feeds, runOptions) =>
      queue.push(async () => {
        const out = await session.run(feeds as Parameters<typeof session.run>[0], runOptions ?? {});
        return Object.fromEntries(
          Object.entries(out).map(([name, value]) => [name, webTensor(value)]),
        ) as InferenceSession.ReturnType;
      }),
    release() {
      released ??= queue.push(() => session.release());
      return released;
    },
  };
}
