/**
 * Creating onnxruntime-web sessions from (possibly patched) ONNX models.
 * onnxruntime-web cannot swap a session's weights, so every merged adapter
 * gets a session of its own built from the patched model bytes.
 * @module
 */
import type { ModelProto } from "../deps/onnx_proto.ts";
import { type InferenceSession, ort } from "../deps/ort.ts";
import { OnnxModelError } from "../errors.ts";
import { encodeModel } from "../onnx/model_file.ts";

/** Session settings a model was loaded with, reused for its adapters. */
export interface SessionSettings {
  executionProviders?: InferenceSession.SessionOptions["executionProviders"];
  sessionOptions?: InferenceSession.SessionOptions;
}

/**
 * Builds a session from a decoded model and its external data files.
 *
 * @example
 * ```ts
 * import { createSession } from "./session.ts";
 * // const session = await createSession(model, new Map(), {}, "onnx/model.onnx");
 * ```
 */
export async function createSession(
  model: ModelProto | Uint8Array,
  externalData: ReadonlyMap<string, Uint8Array>,
  settings: SessionSettings,
  file: string,
): Promise<InferenceSession> {
  const bytes = model instanceof Uint8Array ? model : encodeModel(model);
  const options: InferenceSession.SessionOptions = {
    ...settings.sessionOptions,
    executionProviders: settings.executionProviders ?? settings.sessionOptions?.executionProviders ?? ["wasm"],
  };
  if (externalData.size > 0) {
    options.externalData = [...externalData].map(([path, data]) => ({ path, data }));
  }
  try {
    return await ort.InferenceSession.create(bytes, options);
  } catch (cause) {
    throw new OnnxModelError(`onnxruntime could not create a session: ${(cause as Error).message ?? cause}`, { file, cause });
  }
}
