/**
 * What the fuzzer feeds peft-edge, each from real files: safetensors
 * headers and bodies (mutations of the fixtures' adapter weights), adapter
 * configs (every field given wrong types and edge values, regexes
 * including catastrophic ones, then planned against a real base), ONNX
 * bases (mutated bytes of the fixtures' bases, loaded into a session), and
 * HTTP requests (against `createApp` in-process through `app.fetch`).
 * A case passes when it ends in success or a typed refusal: a
 * `PeftEdgeError` for the library, a 4xx JSON error for the service.
 * @module
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { type BaseModel, loadBaseModel } from "../../mod.ts";
import { PeftEdgeError } from "../../src/errors.ts";
import { alphaFor, createTargetMatcher, parseLoraConfig, rankFor } from "../../src/config/mod.ts";
import { readAdapter } from "../../src/model/adapter.ts";
import { parseSafetensors } from "../../src/safetensors/mod.ts";
import { createApp } from "../../src/server/mod.ts";
import type { AdapterPool } from "../../src/serving/mod.ts";
import { memorySource } from "../../src/storage/memory.ts";
import { mutateBytes, mutateObject, oddValue } from "./mutate.ts";
import type { Rng } from "./rng.ts";

/** How a case ended, when it ended well. */
export type Outcome = "accepted" | "refused";

/** One fuzz target. */
export interface FuzzTarget {
  readonly name: string;
  /** Share of the time budget. */
  readonly share: number;
  /** Longest a case may take. */
  readonly timeoutMs: number;
  /** Runs one case; throws a {@linkcode FuzzFailure} (or anything untyped) when the outcome is wrong. */
  run(rng: Rng): Promise<Outcome>;
}

/** A case whose outcome is wrong (not a crash: a wrong status, an untyped error's description). */
export class FuzzFailure extends Error {
  override name = "FuzzFailure";
}

const fixture = (path: string) => fileURLToPath(new URL(`../fixtures/${path}`, import.meta.url));
const ADAPTERS = [
  "llama-tiny-lora-qv",
  "llama-tiny-lora-mlp-b",
  "llama-tiny-lora-all-rslora-f16",
  "llama-tiny-dora-qv",
];

/** Library calls: a PeftEdgeError is a typed refusal, anything else a failure. */
async function typed(fn: () => Promise<unknown> | unknown): Promise<Outcome> {
  try {
    await fn();
    return "accepted";
  } catch (error) {
    if (error instanceof PeftEdgeError) return "refused";
    throw error;
  }
}

/** The header region of a safetensors file: [8, 8 + header length). */
function headerRange(bytes: Uint8Array): [number, number] {
  const length = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return [0, Math.min(bytes.length, 8 + length)];
}

/** A safetensors file with one entry of its header changed (and sometimes a wrong header length). */
function mutateHeader(rng: Rng, bytes: Uint8Array): Uint8Array {
  const [, end] = headerRange(bytes);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, end)));
  const keys = Object.keys(header);
  const key = rng.chance(0.1) ? "__metadata__" : rng.pick(keys);
  const entry = header[key] && typeof header[key] === "object" ? header[key] : {};
  const field = rng.pick(["dtype", "shape", "data_offsets", "extra"]);
  const edges: Record<string, unknown[]> = {
    dtype: ["F64", "F16", "BF16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "F4", "X", "", 32],
    shape: [[], [0], [-1], [2 ** 31, 2 ** 31], [1.5], ["2"], [2 ** 53], Array(64).fill(2), [4, 0, 4]],
    data_offsets: [[0, 0], [0, 2 ** 53], [-4, 4], [8, 4], [0, 1e20], [1, 2, 3], ["0", "4"], [0.5, 4]],
  };
  entry[field] = edges[field] && rng.chance(0.7) ? rng.pick(edges[field]) : oddValue(rng);
  if (rng.chance(0.05)) header[key] = oddValue(rng);
  else header[key] = entry;
  if (rng.chance(0.05)) header[`dup_${rng.int(9)}`] = structuredClone(header[rng.pick(keys)]);
  const text = new TextEncoder().encode(JSON.stringify(header));
  const lengthField = rng.chance(0.9) ? text.length : text.length + rng.pick([-1, 1, -8, 8, 2 ** 20]);
  const out = new Uint8Array(8 + text.length + (bytes.length - end));
  new DataView(out.buffer).setBigUint64(0, BigInt(Math.max(0, lengthField)), true);
  out.set(text, 8);
  out.set(bytes.subarray(end), 8 + text.length);
  return out;
}

/** The safetensors target: parse, then read every tensor as the loader would. */
export async function safetensorsTarget(): Promise<FuzzTarget> {
  const files = await Promise.all(ADAPTERS.map((a) => readFile(fixture(`${a}/adapter_model.safetensors`))));
  return {
    name: "safetensors",
    share: 0.2,
    timeoutMs: 2000,
    run: (rng) => {
      const original = new Uint8Array(rng.pick(files));
      const bytes = rng.chance(0.5)
        ? mutateHeader(rng, original)
        : mutateBytes(rng, original, rng.chance(0.7) ? headerRange(original) : undefined);
      return typed(() => {
        const file = parseSafetensors(bytes, "adapter_model.safetensors");
        for (const name of file.names()) file.toTypedArray(name);
      });
    },
  };
}

/** Every field PEFT's LoraConfig reads (and a few it does not). */
const CONFIG_FIELDS = [
  "peft_type",
  "task_type",
  "r",
  "lora_alpha",
  "target_modules",
  "exclude_modules",
  "rank_pattern",
  "alpha_pattern",
  "layers_to_transform",
  "layers_pattern",
  "modules_to_save",
  "bias",
  "fan_in_fan_out",
  "use_rslora",
  "use_dora",
  "lora_bias",
  "lora_dropout",
  "init_lora_weights",
  "inference_mode",
  "trainable_token_indices",
  "layer_replication",
  "megatron_config",
  "base_model_name_or_path",
  "revision",
  "target_parameters",
  "alora_invocation_tokens",
  "use_qalora",
];

const MODULE_NAMES = [
  "model.layers.0.self_attn.q_proj",
  "model.layers.1.self_attn.v_proj",
  "model.layers.1.mlp.down_proj",
  "model.embed_tokens",
  "lm_head",
  `model.layers.0.${"a".repeat(2000)}`,
  "a".repeat(30) + "!",
  "x".repeat(40) + "y",
];

/** The adapter-config target: parse, match modules, rank and alpha per module, and now and then plan it on a base. */
export async function configTarget(base: BaseModel): Promise<FuzzTarget> {
  const configs = await Promise.all(
    ADAPTERS.map(async (a) => JSON.parse(await readFile(fixture(`${a}/adapter_config.json`), "utf8"))),
  );
  const weights = new Uint8Array(await readFile(fixture(`${ADAPTERS[0]}/adapter_model.safetensors`)));
  const quiet = () => {};
  return {
    name: "adapter_config",
    share: 0.25,
    timeoutMs: 2000,
    run: async (rng) => {
      const fields = rng.chance(0.5) ? CONFIG_FIELDS.slice(2, 9) : CONFIG_FIELDS;
      let text = JSON.stringify(mutateObject(rng, rng.pick(configs), fields));
      if (rng.chance(0.1)) text = new TextDecoder().decode(mutateBytes(rng, new TextEncoder().encode(text)));
      const parsed = await typed(() => {
        const config = parseLoraConfig(text, { file: "adapter_config.json", onWarning: quiet });
        const matches = createTargetMatcher(config);
        for (const name of MODULE_NAMES) {
          if (matches(name)) [rankFor(config, name), alphaFor(config, name)];
        }
      });
      if (parsed === "refused" || !rng.chance(0.15)) return parsed;
      const files = { "adapter_config.json": new TextEncoder().encode(text), "adapter_model.safetensors": weights };
      return typed(() =>
        readAdapter(base.weights, memorySource("fuzz-adapter", files), "default", { onWarning: quiet })
      );
    },
  };
}

/** The ONNX-base target: a base whose model file (or config) is mutated, loaded into a session. */
export async function onnxTarget(): Promise<FuzzTarget> {
  const bases = await Promise.all(["llama-tiny", "gpt2-tiny"].map(async (name) => ({
    config: JSON.parse(await readFile(fixture(`${name}/config.json`), "utf8")),
    model: new Uint8Array(await readFile(fixture(`${name}/onnx/model.onnx`))),
  })));
  return {
    name: "onnx_base",
    share: 0.25,
    timeoutMs: 15_000,
    run: async (rng) => {
      const base = rng.pick(bases);
      const config = rng.chance(0.15) ? mutateObject(rng, base.config, Object.keys(base.config)) : base.config;
      // Most of a file is weight bytes: aim at its first KiB (the graph's header) half the time.
      const focus: [number, number] | undefined = rng.chance(0.5) ? [0, 1024] : undefined;
      const model = rng.chance(0.9) ? mutateBytes(rng, base.model, focus) : base.model;
      const files = { "config.json": new TextEncoder().encode(JSON.stringify(config)), "onnx/model.onnx": model };
      return await typed(async () => {
        const loaded = await loadBaseModel(memorySource("fuzz-base", files));
        await loaded.release();
      });
    },
  };
}

const ROUTES: ReadonlyArray<[method: string, path: string]> = [
  ["POST", "/v1/completions"],
  ["POST", "/v1/chat/completions"],
  ["POST", "/v1/adapters"],
  ["GET", "/v1/models"],
  ["GET", "/v1/adapters"],
  ["DELETE", "/v1/adapters/nope"],
  ["GET", "/health"],
  ["PUT", "/v1/completions"],
  ["POST", "/v1/nothing"],
];

const COMPLETION = { model: "py", prompt: "def ", max_tokens: 3, temperature: 0, stream: false };
const CHAT = { model: "byte-llama", messages: [{ role: "user", content: "hi" }], max_tokens: 3 };
const LOAD = { id: "python", name: "other" };
const REQUEST_FIELDS = [
  "model",
  "prompt",
  "messages",
  "max_tokens",
  "max_completion_tokens",
  "temperature",
  "top_p",
  "top_k",
  "seed",
  "stop",
  "stream",
  "stream_options",
  "n",
  "logprobs",
  "repetition_penalty",
  "id",
  "name",
  "revision",
];

/** The HTTP target: mutated requests through `app.fetch`; never a 5xx, every error a JSON body. */
export function httpTarget(pool: AdapterPool, adminToken: string): FuzzTarget {
  const logger = { warn: () => {}, error: () => {} };
  const app = createApp({ pool, adminToken, maxTokens: 4, allowHub: false, localRoots: [], logger });
  return {
    name: "http",
    share: 0.3,
    timeoutMs: 10_000,
    run: async (rng) => {
      const [method, path] = rng.chance(0.9) ? rng.pick(ROUTES.slice(0, 3)) : rng.pick(ROUTES);
      const template = path === "/v1/chat/completions" ? CHAT : path === "/v1/adapters" ? LOAD : COMPLETION;
      let body: Uint8Array | undefined;
      if (method !== "GET" && method !== "DELETE") {
        const text = rng.chance(0.1)
          ? JSON.stringify(oddValue(rng))
          : JSON.stringify(mutateObject(rng, template, REQUEST_FIELDS));
        body = new TextEncoder().encode(text);
        if (rng.chance(0.15)) body = mutateBytes(rng, body);
      }
      const headers: Record<string, string> = {
        "content-type": rng.chance(0.9) ? "application/json" : rng.pick([
          "text/plain",
          "",
          "application/json; charset=latin1",
          "application/x+json",
          "multipart/form-data",
        ]),
      };
      // Management only with GET and POST: a fuzzed DELETE must not remove the adapter whose outputs are checked.
      if (method !== "DELETE" && rng.chance(0.5)) headers.authorization = `Bearer ${adminToken}`;
      else if (rng.chance(0.2)) {
        headers.authorization = rng.pick(["Bearer", "Bearer x", "Basic abc", `Bearer ${"a".repeat(5000)}`]);
      }
      const response = await app.fetch(
        new Request(`http://fuzz.local${path}`, { method, headers, body: body as Uint8Array<ArrayBuffer> | undefined }),
      );
      const text = await response.text();
      if (response.status >= 500) {
        throw new FuzzFailure(`${method} ${path} answered ${response.status}: ${text.slice(0, 300)}`);
      }
      if (response.status >= 400) {
        let error: unknown;
        try {
          error = JSON.parse(text).error;
        } catch {
          throw new FuzzFailure(
            `${method} ${path} answered ${response.status} without a JSON body: ${text.slice(0, 200)}`,
          );
        }
        if (typeof (error as { message?: unknown })?.message !== "string") {
          throw new FuzzFailure(
            `${method} ${path} answered ${response.status} without error.message: ${text.slice(0, 200)}`,
          );
        }
        return "refused";
      }
      if (response.headers.get("content-type")?.startsWith("text/event-stream") && /"error"/.test(text)) {
        throw new FuzzFailure(`${method} ${path}: a stream ended with an error event: ${text.slice(-300)}`);
      }
      return "accepted";
    },
  };
}
