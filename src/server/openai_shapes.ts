/**
 * Response bodies in OpenAI's shapes: completions, chat completions, their
 * streamed chunks, usage, and the model list.
 * @module
 */
import type { FinishReason, GenerationResult } from "../generate/mod.ts";

/**
 * OpenAI's finish reasons: a stop string and eos are both `stop`.
 *
 * @example
 * ```ts
 * import { finishReason } from "./openai_shapes.ts";
 * finishReason("eos"); // "stop"
 * ```
 */
export function finishReason(reason: FinishReason): "stop" | "length" {
  return reason === "length" ? "length" : "stop";
}

/**
 * OpenAI's `usage` object.
 *
 * @example
 * ```ts
 * import type { Usage } from "./openai_shapes.ts";
 * const usage: Usage = { prompt_tokens: 4, completion_tokens: 16, total_tokens: 20 };
 * ```
 */
export interface Usage {
  /** Tokens in the prompt. */
  prompt_tokens: number;
  /** Tokens generated. */
  completion_tokens: number;
  /** Both together. */
  total_tokens: number;
}

/**
 * What every body and chunk of one response shares.
 *
 * @example
 * ```ts
 * import type { ResponseHead } from "./openai_shapes.ts";
 * const head: ResponseHead = { id: "cmpl-1", created: 1700000000, model: "base" };
 * ```
 */
export interface ResponseHead {
  /** Response id (`cmpl-…`, `chatcmpl-…`) or model id. */
  id: string;
  /** Unix seconds. */
  created: number;
  /** The model that answered. */
  model: string;
}

/** `stop` or `length`, or null while streaming. */
type Finish = "stop" | "length" | null;

/**
 * A `text_completion` body or streamed chunk.
 *
 * @example
 * ```ts
 * import type { CompletionBody } from "./openai_shapes.ts";
 * declare const body: CompletionBody;
 * console.log(body.choices[0].text);
 * ```
 */
export interface CompletionBody extends ResponseHead {
  /** The kind of object, as OpenAI names it. */
  object: "text_completion";
  /** The single choice (`n` is always 1). */
  choices: Array<{ text: string; index: 0; logprobs: null; finish_reason: Finish }>;
  /** Token counts. */
  usage?: Usage;
}

/**
 * A `chat.completion` body.
 *
 * @example
 * ```ts
 * import type { ChatBody } from "./openai_shapes.ts";
 * declare const body: ChatBody;
 * console.log(body.choices[0].message.content);
 * ```
 */
export interface ChatBody extends ResponseHead {
  /** The kind of object, as OpenAI names it. */
  object: "chat.completion";
  /** The single choice (`n` is always 1). */
  choices: Array<{
    index: 0;
    message: { role: "assistant"; content: string };
    logprobs: null;
    finish_reason: "stop" | "length";
  }>;
  /** Token counts. */
  usage: Usage;
}

/**
 * A `chat.completion.chunk`.
 *
 * @example
 * ```ts
 * import type { ChatChunk } from "./openai_shapes.ts";
 * declare const chunk: ChatChunk;
 * console.log(chunk.choices[0].delta.content ?? "");
 * ```
 */
export interface ChatChunk extends ResponseHead {
  /** The kind of object, as OpenAI names it. */
  object: "chat.completion.chunk";
  /** The single choice (`n` is always 1). */
  choices: Array<{ index: 0; delta: { role?: "assistant"; content?: string }; logprobs: null; finish_reason: Finish }>;
}

/**
 * The usage-only last chunk of a stream.
 *
 * @example
 * ```ts
 * import type { UsageChunk } from "./openai_shapes.ts";
 * declare const chunk: UsageChunk;
 * console.log(chunk.usage.total_tokens);
 * ```
 */
export interface UsageChunk extends ResponseHead {
  /** The kind of object, as OpenAI names it. */
  object: "text_completion" | "chat.completion.chunk";
  /** The single choice (`n` is always 1). */
  choices: [];
  /** Token counts. */
  usage: Usage;
}

/**
 * One model of `GET /v1/models`.
 *
 * @example
 * ```ts
 * import type { ModelEntry } from "./openai_shapes.ts";
 * const entry: ModelEntry = { id: "python", object: "model", created: 0, owned_by: "peft-edge", root: "python", parent: "base" };
 * ```
 */
export interface ModelEntry {
  /** Response id (`cmpl-…`, `chatcmpl-…`) or model id. */
  id: string;
  /** The kind of object, as OpenAI names it. */
  object: "model";
  /** Unix seconds. */
  created: number;
  /** Always `peft-edge`. */
  owned_by: string;
  /** The model's own id. */
  root: string;
  /** The base's name for an adapter, null for the base. */
  parent: string | null;
}

/**
 * Token counts of a finished generation.
 *
 * @example
 * ```ts
 * import { usage } from "./openai_shapes.ts";
 * import type { GenerationResult } from "../generate/mod.ts";
 * declare const result: GenerationResult;
 * usage(result).total_tokens;
 * ```
 */
export function usage(result: GenerationResult): Usage {
  const prompt = result.promptTokenIds.length;
  const completion = result.tokenIds.length;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/**
 * The identity every chunk and body of one response shares.
 *
 * @example
 * ```ts
 * import { responseHead } from "./openai_shapes.ts";
 * const head = responseHead("cmpl", "python"); // { id: "cmpl-…", created: 1700000000, model: "python" }
 * ```
 */
export function responseHead(prefix: "cmpl" | "chatcmpl", model: string): ResponseHead {
  return { id: `${prefix}-${crypto.randomUUID().replaceAll("-", "")}`, created: Math.floor(Date.now() / 1000), model };
}

/**
 * A `text_completion` body, or one streamed chunk of it (`result` absent).
 *
 * @example
 * ```ts
 * import { completionBody, responseHead } from "./openai_shapes.ts";
 * completionBody(responseHead("cmpl", "base"), "was a", null);
 * ```
 */
export function completionBody(
  head: ResponseHead,
  text: string,
  finish: Finish,
  result?: GenerationResult,
): CompletionBody {
  return {
    ...head,
    object: "text_completion",
    choices: [{ text, index: 0, logprobs: null, finish_reason: finish }],
    ...(result ? { usage: usage(result) } : {}),
  };
}

/**
 * A `chat.completion` body.
 *
 * @example
 * ```ts
 * import { chatBody, responseHead } from "./openai_shapes.ts";
 * import type { GenerationResult } from "../generate/mod.ts";
 * declare const result: GenerationResult;
 * chatBody(responseHead("chatcmpl", "base"), result);
 * ```
 */
export function chatBody(head: ResponseHead, result: GenerationResult): ChatBody {
  return {
    ...head,
    object: "chat.completion",
    choices: [{
      index: 0,
      message: { role: "assistant", content: result.text },
      logprobs: null,
      finish_reason: finishReason(result.finishReason),
    }],
    usage: usage(result),
  };
}

/**
 * A `chat.completion.chunk`.
 *
 * @example
 * ```ts
 * import { chatChunk, responseHead } from "./openai_shapes.ts";
 * chatChunk(responseHead("chatcmpl", "base"), { role: "assistant", content: "" }, null);
 * ```
 */
export function chatChunk(
  head: ResponseHead,
  delta: { role?: "assistant"; content?: string },
  finish: Finish,
): ChatChunk {
  return {
    ...head,
    object: "chat.completion.chunk",
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  };
}

/**
 * The final streamed chunk with usage only (`stream_options.include_usage`).
 *
 * @example
 * ```ts
 * import { usageChunk, responseHead } from "./openai_shapes.ts";
 * import type { GenerationResult } from "../generate/mod.ts";
 * declare const result: GenerationResult;
 * usageChunk(responseHead("cmpl", "base"), "text_completion", result);
 * ```
 */
export function usageChunk(
  head: ResponseHead,
  object: "text_completion" | "chat.completion.chunk",
  result: GenerationResult,
): UsageChunk {
  return { ...head, object, choices: [], usage: usage(result) };
}

/**
 * One entry of `GET /v1/models`; adapters name their base as `parent`.
 *
 * @example
 * ```ts
 * import { modelEntry } from "./openai_shapes.ts";
 * modelEntry("python", 1700000000, "base");
 * ```
 */
export function modelEntry(id: string, created: number, parent: string | null): ModelEntry {
  return { id, object: "model", created, owned_by: "peft-edge", root: id, parent };
}
