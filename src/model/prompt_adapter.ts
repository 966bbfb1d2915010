/**
 * Reading a prompt-learning adapter (prompt tuning, P-tuning, prefix
 * tuning) for a base, as PEFT's `from_pretrained` does in inference mode:
 * its config, and the one tensor it needs, `prompt_embeddings`, checked
 * against the config and the base before anything is built.
 * @module
 */
import { AdapterMismatchError, UnsupportedError } from "../errors.ts";
import { findTokenEmbedding, poolsByTokenIds } from "../onnx/prompt_surgery.ts";
import { parseLoraConfig } from "../config/mod.ts";
import { ModuleNotInExportError, planReplace, type ReplacePatch } from "../lora/plan.ts";
import type { Safetensors } from "../safetensors/mod.ts";
import type { FileSource } from "../storage/file_source.ts";
import { preparedForModel, type PromptLearningConfig } from "../tuners/prompt_learning/config.ts";
import { PROMPT_METHODS } from "../tuners/prompt_learning/methods.ts";
import { type AdapterOptions, checkAdapterName, type LoadedAdapter, readAdapterWeights } from "./adapter.ts";
import type { BaseModel } from "./base_model.ts";

/** The tensor PEFT saves for every prompt-learning method. */
export const PROMPT_EMBEDDINGS = "prompt_embeddings";
const CONFIG_FILE = "adapter_config.json";

/**
 * The adapter's config object (`options.config`, else `adapter_config.json`),
 * or `undefined` when there is none or it is not a JSON object (the LoRA
 * loader then reports it).
 *
 * @example
 * ```ts
 * import { resolveSource } from "../hub/resolve.ts";
 * import { adapterConfigValues } from "./prompt_adapter.ts";
 * const source = await resolveSource("tests/fixtures/prompt/byte-llama-prompt-tuning");
 * (await adapterConfigValues(source, {}))?.peft_type; // "PROMPT_TUNING"
 * ```
 */
export async function adapterConfigValues(
  source: FileSource,
  options: { config?: Record<string, unknown> },
): Promise<Record<string, unknown> | undefined> {
  let values: unknown = options.config;
  if (values === undefined) {
    if (!await source.exists(CONFIG_FILE)) return undefined;
    try {
      values = JSON.parse(new TextDecoder().decode(await source.read(CONFIG_FILE)));
    } catch {
      return undefined; // the other loaders report the malformed file
    }
  }
  if (typeof values !== "object" || values === null || Array.isArray(values)) return undefined;
  return values as Record<string, unknown>;
}

/** Checks a prefix against the base's KV cache inputs: one key and value per layer, `[batch, heads, past, head_dim]`. */
function checkPrefixFits(base: BaseModel, config: PromptLearningConfig, file: string): void {
  const past = base.onnx.graph!.input.filter((i) => i.name.startsWith("past_key_values."));
  if (past.length === 0) {
    throw new UnsupportedError(
      "PREFIX_TUNING gives the model its prefix as past key/values, and this base has no past_key_values inputs; " +
        "use an export with a KV cache (Optimum's decoder with past)",
      { file: base.file, key: "past_key_values" },
    );
  }
  if (config.numLayers! * 2 !== past.length) {
    throw new AdapterMismatchError(
      `num_layers is ${config.numLayers}, but the base has ${past.length / 2} layers of past key/values`,
      { file, key: "num_layers" },
    );
  }
  const heads = config.numAttentionHeads!;
  const headDim = config.tokenDim / heads;
  for (const input of past) {
    const dims = input.type?.value.case === "tensorType" ? input.type.value.value.shape?.dim ?? [] : [];
    const fixed = (d: (typeof dims)[number] | undefined) =>
      d?.value.case === "dimValue" ? Number(d.value.value) : undefined;
    const [h, d] = [fixed(dims[1]), fixed(dims[3])];
    if ((h !== undefined && h !== heads) || (d !== undefined && d !== headDim)) {
      throw new AdapterMismatchError(
        `the prefix has ${heads} heads of size ${headDim} (num_attention_heads, token_dim / num_attention_heads), ` +
          `but ${input.name} takes ${h} heads of size ${d}`,
        { file, key: "num_attention_heads" },
      );
    }
  }
  const modelType = base.config.model_type;
  if (modelType === "bloom" || modelType === "gpt_bigcode") {
    throw new UnsupportedError(`PREFIX_TUNING on ${modelType}: PEFT post-processes that model's cache layout`, {
      key: "model_type",
    });
  }
}

/**
 * The `modules_to_save` a `SEQ_CLS` adapter saves beside its prompt (PEFT:
 * `base_model.<module>.weight` / `.bias`, the classifier), planned as
 * replacements of the base's modules.
 */
function savedModules(
  base: BaseModel,
  config: PromptLearningConfig,
  weights: Safetensors,
): { patches: ReplacePatch[]; keys: Set<string> } {
  const patches: ReplacePatch[] = [];
  const keys = new Set<string>();
  const selection = parseLoraConfig({ peft_type: "LORA" });
  for (const module of config.modulesToSave) {
    const key = (param: string) => {
      const k = `base_model.${module}.${param}`;
      return weights.names().includes(k) ? k : undefined;
    };
    const tensors = { module, fullWeight: key("weight"), fullBias: key("bias") };
    if (tensors.fullWeight === undefined && tensors.fullBias === undefined) continue; // not in this model (score)
    const target = base.weights.resolve(module);
    if (!target) {
      throw new ModuleNotInExportError(module, base.weights.file ?? base.file, "no weight found for it");
    }
    const className = base.weights.resolveScope(module)?.className;
    patches.push(...planReplace(tensors, target, (k) => weights.info(k).shape, selection, className));
    for (const k of [tensors.fullWeight, tensors.fullBias]) if (k) keys.add(k);
  }
  return { patches, keys };
}

/**
 * Reads and checks a prompt-learning adapter for a base. The prompt is fed
 * at run time; the plan holds only what a `SEQ_CLS` adapter saves whole
 * (its classifier, as replacements), nothing for `CAUSAL_LM`.
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "./base_model.ts";
 * import { resolveSource } from "../hub/resolve.ts";
 * import { adapterConfigValues, readPromptAdapter } from "./prompt_adapter.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const source = await resolveSource("tests/fixtures/prompt/byte-llama-p-tuning-mlp");
 * const adapter = await readPromptAdapter(base, source, (await adapterConfigValues(source, {}))!, "default", {});
 * adapter.config.peftType; // "P_TUNING"
 * ```
 */
export async function readPromptAdapter(
  base: BaseModel,
  source: FileSource,
  values: Readonly<Record<string, unknown>>,
  name: string,
  options: AdapterOptions,
): Promise<LoadedAdapter> {
  checkAdapterName(name);
  if (options.isTrainable) {
    throw new UnsupportedError("isTrainable: true trains LoRA adapters; prompt-learning adapters load for inference", {
      key: "isTrainable",
    });
  }
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    (options.onWarning ?? console.warn)(message);
  };
  const file = options.config ? "config option" : CONFIG_FILE;
  const method = PROMPT_METHODS[values.peft_type as keyof typeof PROMPT_METHODS];
  // As PEFT's from_pretrained: the saved config completed (and GQA-adjusted) from the base's config.json.
  const config = method.parse(preparedForModel(values, base.config, file), { file, warn });
  const weights = await readAdapterWeights(source);
  const weightsFile = "adapter_model.safetensors";
  if (!weights.names().includes(PROMPT_EMBEDDINGS)) {
    throw new AdapterMismatchError(`a ${config.peftType} adapter saves ${PROMPT_EMBEDDINGS}, and this one has none`, {
      file: weightsFile,
      key: PROMPT_EMBEDDINGS,
    });
  }
  if (config.numTransformerSubmodules !== 1) {
    throw new UnsupportedError(
      `num_transformer_submodules is ${config.numTransformerSubmodules}; a decoder-only model has 1`,
      { file, key: "num_transformer_submodules" },
    );
  }
  const prefix = config.peftType === "PREFIX_TUNING";
  const width = prefix ? config.numLayers! * 2 * config.tokenDim : config.tokenDim;
  const expected = [config.numVirtualTokens, width];
  const shape = weights.info(PROMPT_EMBEDDINGS).shape;
  if (shape.length !== 2 || shape[0] !== expected[0] || shape[1] !== expected[1]) {
    // PEFT's load_state_dict(strict=True) into the prompt encoder's embedding refuses this too.
    throw new AdapterMismatchError(
      `${PROMPT_EMBEDDINGS} has shape [${shape.join(", ")}], but the config gives [${expected.join(", ")}]`,
      { file: weightsFile, key: PROMPT_EMBEDDINGS },
    );
  }
  if (prefix) {
    checkPrefixFits(base, config, file);
  } else {
    const { hidden } = findTokenEmbedding(base.onnx.graph!, base.file);
    const modelHidden = hidden ?? base.config.hidden_size;
    if (modelHidden !== undefined && modelHidden !== config.tokenDim) {
      throw new AdapterMismatchError(
        `token_dim is ${config.tokenDim}, but the base's token embeddings have width ${modelHidden}`,
        { file, key: "token_dim" },
      );
    }
  }
  const saved = savedModules(base, config, weights);
  const extra = weights.names().filter((k) => k !== PROMPT_EMBEDDINGS && !saved.keys.has(k));
  if (extra.length > 0) {
    warn(`${source.location}: ${extra.length} adapter key(s) are not used by ${config.peftType}: ${extra.join(", ")}`);
  }
  if (config.taskType === "SEQ_CLS" && !prefix && poolsByTokenIds(base.onnx.graph!)) {
    // PEFT feeds such a classifier inputs_embeds, so it pools the last position; the export pools the last token
    // that is not pad_token_id. They agree on rows that do not end in it (checked per run), given the pad id.
    if (!Number.isInteger(base.config.pad_token_id)) {
      throw new UnsupportedError(
        `${config.peftType} with task_type "SEQ_CLS" on a classifier export that picks its pooled token from ` +
          "input_ids (a decoder classifier) needs the base's pad_token_id (config.json has none)",
        { file: "config.json", key: "pad_token_id" },
      );
    }
  }
  const plan = { patches: saved.patches, tokens: [], unmatchedKeys: extra, missingModules: [], missingKeys: [] };
  const parameters = shape[0] * shape[1];
  return { name, location: source.location, config, plan, weights, parameters, warnings };
}
