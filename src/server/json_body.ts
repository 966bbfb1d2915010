/**
 * Request bodies as JSON (400 for bytes that are not UTF-8 JSON) validated
 * with a zod schema (400 naming the field), read within a deadline (408 for
 * a client that trickles its body). Their size is limited before, by
 * Hono's `bodyLimit`, and their media type by `jsonOnly` (see `limits.ts`).
 * @module
 */
import type { Context } from "../deps/hono.ts";
import type { z } from "../deps/zod.ts";
import { ApiError } from "./api_error.ts";

function invalid(message: string, param?: string): ApiError {
  return new ApiError(400, "invalid_request_error", message, { param });
}

/** The body's bytes, or a 408 when they take longer than `timeoutMs`. */
async function readBytes(c: Context, timeoutMs: number): Promise<ArrayBuffer> {
  const reading = c.req.arrayBuffer();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      // The read fails later, when the connection is dropped; that failure has nowhere to go.
      reading.catch(() => {});
      reject(new ApiError(408, "invalid_request_error", `the request body took longer than ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([reading, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Parses a request's body as JSON. */
async function readJson(c: Context, timeoutMs: number): Promise<unknown> {
  const bytes = await readBytes(c, timeoutMs);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw invalid("the request body is not valid UTF-8");
  }
  if (text.trim() === "") throw invalid("the request body is empty; send a JSON object");
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw invalid(`the request body is not valid JSON: ${(cause as Error).message}`);
  }
}

/** Validates a parsed body; the first problem becomes a 400 naming its field. */
function validate<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid("the request body must be a JSON object");
  }
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const param = issue.path.map(String).join(".");
  throw invalid(param ? `${param}: ${issue.message}` : issue.message, param || undefined);
}

/**
 * Reads (within `timeoutMs`, default 30 s) and validates a JSON body.
 *
 * @example
 * ```ts
 * import { Hono } from "../deps/hono.ts";
 * import { z } from "../deps/zod.ts";
 * import { jsonBody } from "./json_body.ts";
 * const app = new Hono().post("/", async (c) => c.json(await jsonBody(c, z.object({ name: z.string() }))));
 * ```
 */
export async function jsonBody<T extends z.ZodType>(
  c: Context,
  schema: T,
  timeoutMs = 30_000,
): Promise<z.infer<T>> {
  return validate(schema, await readJson(c, timeoutMs));
}
