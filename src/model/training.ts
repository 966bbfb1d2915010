/**
 * Wiring a loaded adapter to the training code: the base's graph, weights
 * and decoder interface become a {@linkcode TrainableAdapter}, whose
 * sessions run on the base's device with its session options.
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import { UnsupportedError } from "../errors.ts";
import { describeDecoder } from "../generate/decoder_layout.ts";
import { TrainableAdapter } from "../train/trainable.ts";
import type { LoadedAdapter } from "./adapter.ts";
import type { BaseModel } from "./base_model.ts";
import { createSession } from "./session.ts";

/**
 * A trainable copy of an adapter's tensors on a base.
 *
 * @throws {UnsupportedError} for bases or adapters training does not cover (merged decoders, DoRA, float16).
 * @example
 * ```ts
 * import { loadBaseModel } from "./base_model.ts";
 * import { readAdapter } from "./adapter.ts";
 * import { trainableAdapter } from "./training.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const adapter = await readAdapter(base.weights, "tests/fixtures/llama-tiny-lora-qv", "default");
 * const trainable = trainableAdapter(base, adapter);
 * console.log(trainable.params.tensors.length); // 8
 * ```
 */
export function trainableAdapter(base: BaseModel, adapter: LoadedAdapter): TrainableAdapter {
  const layout = describeDecoder(base);
  if (layout.useCacheBranch) {
    throw new UnsupportedError("training a merged decoder (use_cache_branch) is not supported; export without it", {
      key: "use_cache_branch",
    });
  }
  for (const p of adapter.plan.patches) {
    if (p.kind === "replace") {
      throw new UnsupportedError(`training ${p.param} replacements (modules_to_save, bias) is not supported`, {
        key: p.module,
      });
    }
  }
  const settings = {
    device: base.device,
    executionProviders: base.settings.executionProviders,
    sessionOptions: { ...base.settings.sessionOptions, preferredOutputLocation: undefined },
  };
  return new TrainableAdapter({
    onnx: base.onnx,
    weights: base.weights,
    plan: adapter.plan,
    tensor: (key) => adapter.weights.toFloat32(key),
    factory: (model) => createSession(model, base.externalData, settings, base.file),
    extraInputs: (rows) => {
      const dims = [rows, ...layout.emptyPastDims.slice(1)];
      return Object.fromEntries(layout.cache.map((c) => [c.input, new Tensor("float32", new Float32Array(0), dims)]));
    },
    inputNames: base.inputNames,
    vocabSize: layout.vocabSize,
    dropout: adapter.config.loraDropout,
  });
}
