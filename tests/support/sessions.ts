/**
 * Counts the onnxruntime sessions created while a function runs, by wrapping
 * `InferenceSession.create` of the very onnxruntime instance src/ uses
 * (src/deps/ort.ts: patching another copy of the package would count nothing).
 * @module
 */
import { ort } from "../../src/deps/ort.ts";

/** Sessions created while `fn` runs. */
export async function sessionsCreated(fn: () => Promise<void>): Promise<number> {
  const create = ort.InferenceSession.create;
  let created = 0;
  ort.InferenceSession.create = ((...args: Parameters<typeof create>) => {
    created++;
    return create.apply(ort.InferenceSession, args);
  }) as typeof create;
  try {
    await fn();
  } finally {
    ort.InferenceSession.create = create;
  }
  return created;
}
