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
export type { RuntimeOptions, WasmPaths } from "./src/model/runtime_options.ts";
export { fromPretrained, type FromPretrainedOptions } from "./src/model/from_pretrained.ts";
export { createAdapter, type CreateAdapterOptions } from "./src/model/create_adapter.ts";
export type { StepResult, Trainer, TrainerOptions } from "./src/train/trainer.ts";
export type { TrainBatch } from "./src/train/batch.ts";
export type { FitExample, FitOptions, FitProgress, FitResult } from "./src/train/fit.ts";
export type { LoraConfig } from "./src/config/mod.ts";
export type { TunerConfig, TunerType } from "./src/tuners/config.ts";
export type { PromptLearningConfig, PromptLearningType } from "./src/tuners/prompt_learning/config.ts";

export type { ModelDtype } from "./src/onnx/model_variant.ts";
export { ModuleNotInExportError } from "./src/lora/plan.ts";
export type { CombinationType, WeightedAdapterOptions } from "./src/lora/weighted.ts";
export type { FileSource, RangeFile } from "./src/storage/file_source.ts";
export { type MemoryFile, memorySource } from "./src/storage/memory.ts";
export { urlSource, type UrlSourceOptions } from "./src/storage/url.ts";
export type { NetworkOptions } from "./src/storage/http.ts";
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
export type { BatchGenerateOptions } from "./src/generate/batch_generate.ts";
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
  type SchedulerStats,
  type SharedModelOptions,
} from "./src/serving/mod.ts";
export {
  type AppOptions,
  type CorsSettings,
  createApp,
  type ErrorType,
  listen,
  type ListenOptions,
  type PeftEdgeApp,
  type RunningServer,
  type ServerLogger,
} from "./src/server/mod.ts";
export { type BlobWriter, type HubCache, memoryHubCache } from "./src/hub/cache.ts";
export { cacheApiHubCache } from "./src/hub/cache_api.ts";
// Types the public signatures above refer to.
export type { ExecutionProviders, SessionChoice } from "./src/model/session.ts";
export type { PathOrSource } from "./src/hub/resolve.ts";
export type { HubSourceOptions } from "./src/hub/source.ts";
export type { HubCacheStorage, HubSettingsInput } from "./src/hub/settings.ts";
export type { FileProgress } from "./src/hub/download.ts";
export type { LrSchedulerType } from "./src/train/schedulers.ts";
export type { ResolvedTrainerOptions } from "./src/train/trainer_state.ts";
export { type LoraBias, TASK_TYPES, type TaskType } from "./src/config/lora.ts";
export { PROMPT_LEARNING_TYPES, SUPPORTED_PEFT_TYPES, TUNER_TYPES } from "./src/config/peft_types.ts";
export type { LoopTimings } from "./src/generate/token_loop.ts";
export type { TokenizerLike } from "./src/generate/tokenizer_like.ts";
export type { ChatTemplateOptions } from "./src/tokenizer/chat_template.ts";
export type { ShutdownOptions } from "./src/server/listen.ts";
export type { FetchHandler } from "./src/runtime/http_server.ts";
