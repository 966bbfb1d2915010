/**
 * From a validated OpenAI-style request to generation options and a prompt:
 * `max_tokens` defaulted and capped, sampling fields renamed. Fields left
 * out fall back to the base's `generation_config.json` (so `temperature`
 * left out means greedy for a model without `do_sample`).
 * @module
 */
import type { ChatMessage, GenerateOptions, Prompt } from "../generate/mod.ts";
import { ApiError } from "./api_error.ts";
import type { ChatRequest, CompletionRequest } from "./schemas.ts";

/**
 * Token limits of the service.
 *
 * @example
 * ```ts
 * import type { TokenLimits } from "./request_options.ts";
 * const limits: TokenLimits = { maxTokens: 512, defaultMaxTokens: 16 };
 * ```
 */
export interface TokenLimits {
  /** Largest `max_tokens` accepted. */
  maxTokens: number;
  /** `max_tokens` when the request has none. */
  defaultMaxTokens: number;
}

/**
 * Generation options for a request (without `signal`).
 *
 * @example
 * ```ts
 * import { generationOptions } from "./request_options.ts";
 * generationOptions({ max_tokens: 20, temperature: 0, stop: "\n" }, { maxTokens: 512, defaultMaxTokens: 16 });
 * // { maxNewTokens: 20, temperature: 0, stop: ["\n"] }
 * ```
 */
export function generationOptions(
  request: Pick<
    CompletionRequest,
    "max_tokens" | "temperature" | "top_p" | "top_k" | "repetition_penalty" | "seed" | "stop"
  >,
  limits: TokenLimits,
  maxTokensField = "max_tokens",
): GenerateOptions {
  const maxNewTokens = request.max_tokens ?? Math.min(limits.defaultMaxTokens, limits.maxTokens);
  if (maxNewTokens > limits.maxTokens) {
    throw new ApiError(
      400,
      "invalid_request_error",
      `${maxTokensField} is ${maxNewTokens}, more than this server allows (${limits.maxTokens})`,
      { param: maxTokensField },
    );
  }
  const options: GenerateOptions = { maxNewTokens };
  if (request.temperature != null) options.temperature = request.temperature;
  if (request.top_p != null) options.topP = request.top_p;
  if (request.top_k != null) options.topK = request.top_k;
  if (request.repetition_penalty != null) options.repetitionPenalty = request.repetition_penalty;
  if (request.seed != null) options.seed = request.seed;
  if (request.stop != null) options.stop = typeof request.stop === "string" ? [request.stop] : request.stop;
  return options;
}

/**
 * The prompt of a completion request: text or token ids.
 *
 * @example
 * ```ts
 * import { completionPrompt } from "./request_options.ts";
 * completionPrompt({ model: "base", prompt: ["def "] }); // "def "
 * ```
 */
export function completionPrompt(request: CompletionRequest): Prompt {
  const prompt = request.prompt;
  if (typeof prompt === "string") return prompt;
  if (typeof prompt[0] === "string") return prompt[0];
  return prompt as number[];
}

/**
 * The messages of a chat request, text parts joined, for the chat template.
 *
 * @example
 * ```ts
 * import { chatPrompt } from "./request_options.ts";
 * chatPrompt({ model: "base", messages: [{ role: "user", content: [{ type: "text", text: "Hi" }] }] });
 * // [{ role: "user", content: "Hi" }]
 * ```
 */
export function chatPrompt(request: ChatRequest): ChatMessage[] {
  return request.messages.map((m) => {
    const content = typeof m.content === "string" ? m.content : m.content.map((part) => part.text).join("");
    return m.name === undefined ? { role: m.role, content } : { role: m.role, content, name: m.name };
  });
}

/**
 * Options for a chat request: `max_completion_tokens` counts as `max_tokens`.
 *
 * @example
 * ```ts
 * import { chatOptions } from "./request_options.ts";
 * chatOptions({ model: "base", messages: [], max_completion_tokens: 8 }, { maxTokens: 64, defaultMaxTokens: 16 });
 * ```
 */
export function chatOptions(request: ChatRequest, limits: TokenLimits): GenerateOptions {
  const field = request.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens";
  return generationOptions(
    { ...request, max_tokens: request.max_completion_tokens ?? request.max_tokens },
    limits,
    field,
  );
}
