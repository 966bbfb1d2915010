/**
 * peft-edge: apply Hugging Face PEFT LoRA adapters to ONNX base models and
 * run them with onnxruntime-web, in Deno, Bun and browsers.
 *
 * @example
 * ```ts
 * import { fromPretrained, loadBaseModel, Tensor } from "./mod.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const model = await fromPretrained(base, "tests/fixtures/llama-tiny-lora-qv");
 * const ids = [72, 105];
 * const out = await model.run({
 *   input_ids: new Tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, 2]),
 *   attention_mask: new Tensor("int64", new BigInt64Array([1n, 1n]), [1, 2]),
 *   position_ids: new Tensor("int64", new BigInt64Array([0n, 1n]), [1, 2]),
 *   "past_key_values.0.key": new Tensor("float32", new Float32Array(), [1, 2, 0, 16]),
 *   "past_key_values.0.value": new Tensor("float32", new Float32Array(), [1, 2, 0, 16]),
 *   "past_key_values.1.key": new Tensor("float32", new Float32Array(), [1, 2, 0, 16]),
 *   "past_key_values.1.value": new Tensor("float32", new Float32Array(), [1, 2, 0, 16]),
 * });
 * console.log(out.logits.dims);
 * ```
 * @module
 */
export { Tensor } from "./src/deps/ort.ts";
export {
  BaseModel,
  type Feeds,
  loadBaseModel,
  type LoadBaseModelOptions,
  type Outputs,
} from "./src/model/base_model.ts";
export { type AdapterMode, type MergeOptions, PeftModel, type PeftRunOptions } from "./src/model/peft_model.ts";
export type { AdapterOptions } from "./src/model/adapter.ts";
export type { Device, DeviceOption } from "./src/webgpu/device.ts";
export { fromPretrained, type FromPretrainedOptions } from "./src/model/from_pretrained.ts";
export type { LoraConfig } from "./src/config/mod.ts";
export type { ModelDtype } from "./src/onnx/model_variant.ts";
export { ModuleNotInExportError } from "./src/lora/plan.ts";
export type { FileSource } from "./src/storage/file_source.ts";
export { memorySource } from "./src/storage/memory.ts";
export type { ResolveOptions } from "./src/hub/resolve.ts";
export * from "./src/errors.ts";
export type {
  ChatMessage,
  FinishReason,
  GenerateOptions,
  GenerationConfig,
  GenerationResult,
  Prompt,
} from "./src/generate/mod.ts";
export {
  type AdapterInfo,
  type AdapterLocation,
  AdapterPool,
  type AdapterPoolOptions,
  createAdapterPool,
  type CreatePoolOptions,
  type HubOptions,
  type Lease,
  PoolError,
  type PoolErrorKind,
  type PoolUsage,
  type SharedModelOptions,
} from "./src/serving/mod.ts";
export { ApiError, type AppOptions, createApp, type ErrorType, toApiError } from "./src/server/mod.ts";
export { memoryHubCache } from "./src/hub/cache.ts";
