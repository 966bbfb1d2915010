/**
 * zod schemas of the request bodies: the OpenAI-compatible subset the
 * service implements, and the adapter-management body. Unknown fields are
 * ignored (clients send many); fields whose meaning would silently change
 * (`n`, `logprobs`, `echo`, `best_of`, `suffix`, penalties, `tools`) are
 * accepted only with their no-op values.
 * @module
 */
import { z } from "../deps/zod.ts";

const STOP_ERROR = "stop must be a non-empty string or a list of 1 to 4 of them";
const stop = z.union([
  z.string().min(1).max(256),
  z.array(z.string().min(1).max(256)).min(1).max(4),
], { error: STOP_ERROR }).nullish();

const unsupported = (field: string, allowed: string) => `${field} is not supported (only ${allowed})`;

/**
 * Fields shared by completion and chat requests (OpenAI's names; `top_k`
 * and `repetition_penalty` are extensions, as in vLLM).
 *
 * @example
 * ```ts
 * import type { SamplingFields } from "./schemas.ts";
 * const fields: SamplingFields = { model: "python", max_tokens: 32, temperature: 0.7, seed: 1 };
 * ```
 */
export interface SamplingFields {
  /** The base model's name or an adapter's. */
  model: string;
  /** New tokens at most (capped by the server). */
  max_tokens?: number | null;
  /** Sampling temperature; 0 is greedy. Omitted: the model's generation defaults. */
  temperature?: number | null;
  /** Nucleus sampling mass in (0, 1]. */
  top_p?: number | null;
  /** Keep the k most likely tokens; 0 keeps all (extension). */
  top_k?: number | null;
  /** transformers' repetition penalty (extension). */
  repetition_penalty?: number | null;
  /** Seed of the sampler. */
  seed?: number | null;
  /** Up to 4 strings that end generation. */
  stop?: string | string[] | null;
  /** Answer with server-sent events. */
  stream?: boolean | null;
  /** `include_usage`: a last chunk with token counts. */
  stream_options?: { include_usage?: boolean | null } | null;
  /** Only 1. */
  n?: 1 | null;
  /** Only 0. */
  presence_penalty?: 0 | null;
  /** Only 0. */
  frequency_penalty?: 0 | null;
  /** Ignored. */
  user?: string | null;
}

/** Fields shared by completions and chat completions. */
const sampling = {
  model: z.string({ error: "model is required: the base model's name or an adapter's" }).min(1).max(256),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  top_k: z.number().int().min(0).nullish(),
  repetition_penalty: z.number().gt(0).max(10).nullish(),
  seed: z.number().int().min(0).max(2 ** 32 - 1).nullish(),
  stop,
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  n: z.literal(1, { error: unsupported("n", "1") }).nullish(),
  presence_penalty: z.literal(0, { error: unsupported("presence_penalty", "0") }).nullish(),
  frequency_penalty: z.literal(0, { error: unsupported("frequency_penalty", "0") }).nullish(),
  user: z.string().max(256).nullish(),
};

/**
 * `POST /v1/completions`. `prompt` is text, one text in a list, or token ids.
 *
 * @example
 * ```ts
 * import { completionSchema } from "./schemas.ts";
 * completionSchema.parse({ model: "base", prompt: "def ", max_tokens: 16, temperature: 0 });
 * ```
 */
export const completionSchema: z.ZodType<CompletionRequest> = z.object({
  ...sampling,
  prompt: z.union([
    z.string().min(1),
    z.array(z.string().min(1)).length(1),
    z.array(z.number().int().min(0)).min(1),
  ], { error: "prompt must be a non-empty string, a list of one string, or a list of token ids" }),
  echo: z.literal(false, { error: unsupported("echo", "false") }).nullish(),
  logprobs: z.null({ error: unsupported("logprobs", "null") }).optional(),
  best_of: z.literal(1, { error: unsupported("best_of", "1") }).nullish(),
  suffix: z.null({ error: unsupported("suffix", "null") }).optional(),
});

/**
 * A completion request after validation.
 *
 * @example
 * ```ts
 * import type { CompletionRequest } from "./schemas.ts";
 * const request: CompletionRequest = { model: "base", prompt: "The " };
 * ```
 */
export interface CompletionRequest extends SamplingFields {
  /** Text, one text in a list, or token ids. */
  prompt: string | string[] | number[];
  /** Only false. */
  echo?: false | null;
  /** Not supported. */
  logprobs?: null;
  /** Only 1. */
  best_of?: 1 | null;
  /** Not supported. */
  suffix?: null;
}

const textPart = z.object({ type: z.literal("text"), text: z.string() });

const message = z.object({
  role: z.enum(["system", "developer", "user", "assistant", "tool"]),
  content: z.union([z.string(), z.array(textPart)], {
    error: "content must be a string or a list of text parts",
  }),
  name: z.string().max(256).optional(),
});

/**
 * `POST /v1/chat/completions`. `max_completion_tokens` is accepted as
 * `max_tokens`; content parts must be text.
 *
 * @example
 * ```ts
 * import { chatSchema } from "./schemas.ts";
 * chatSchema.parse({ model: "python", messages: [{ role: "user", content: "Write a loop" }] });
 * ```
 */
export const chatSchema: z.ZodType<ChatRequest> = z.object({
  ...sampling,
  max_completion_tokens: z.number().int().min(1).nullish(),
  messages: z.array(message).min(1).max(256),
  logprobs: z.literal(false, { error: unsupported("logprobs", "false") }).nullish(),
  tools: z.never({ error: "tools are not supported" }).optional(),
  functions: z.never({ error: "functions are not supported" }).optional(),
});

/**
 * A chat completion request after validation.
 *
 * @example
 * ```ts
 * import type { ChatRequest } from "./schemas.ts";
 * const request: ChatRequest = { model: "base", messages: [{ role: "user", content: "Hi" }] };
 * ```
 */
export interface ChatRequest extends SamplingFields {
  /** Same as `max_tokens`. */
  max_completion_tokens?: number | null;
  /** The conversation, rendered with the chat template. */
  messages: Array<{
    role: "system" | "developer" | "user" | "assistant" | "tool";
    content: string | Array<{ type: "text"; text: string }>;
    name?: string;
  }>;
  /** Not supported. */
  logprobs?: false | null;
  /** Not supported. */
  tools?: never;
  /** Not supported. */
  functions?: never;
}

/**
 * `POST /v1/adapters`: load adapter `id` (a Hub repo id or a name under a
 * local root) as model `name`.
 *
 * @example
 * ```ts
 * import { loadAdapterSchema } from "./schemas.ts";
 * loadAdapterSchema.parse({ id: "org/python-lora", name: "python", revision: "main" });
 * ```
 */
export const loadAdapterSchema: z.ZodType<LoadAdapterRequest> = z.object({
  id: z.string({ error: "id is required: a Hub repo id or a folder name under an adapter root" }).min(1).max(256),
  name: z.string({ error: "name is required" }).regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/, {
    error: "name must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
  }),
  revision: z.string().min(1).max(200).optional(),
});

/**
 * A load request after validation.
 *
 * @example
 * ```ts
 * import type { LoadAdapterRequest } from "./schemas.ts";
 * const request: LoadAdapterRequest = { id: "org/python-lora", name: "python" };
 * ```
 */
export interface LoadAdapterRequest {
  /** A Hub repo id, or a folder name under a configured root. */
  id: string;
  /** The name requests will use as `model`. */
  name: string;
  /** Branch, tag or commit (Hub ids only). */
  revision?: string;
}
