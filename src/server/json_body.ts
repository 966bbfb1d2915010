/**
 * Request bodies as JSON (400 for bytes that are not UTF-8 JSON) validated
 * with a zod schema (400 naming the field). Their size is limited before,
 * by Hono's `bodyLimit` (see `limits.ts`).
 * @module
 */
import type { Context } from "../deps/hono.ts";
import type { z } from "../deps/zod.ts";
import { ApiError } from "./api_error.ts";

function invalid(message: string, param?: string): ApiError {
  return new ApiError(400, "invalid_request_error", message, { param });
}

/** Parses a request's body as JSON. */
async function readJson(c: Context): Promise<unknown> {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(await c.req.arrayBuffer());
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
 * Reads and validates a JSON body.
 *
 * @example
 * ```ts
 * import { Hono } from "../deps/hono.ts";
 * import { z } from "../deps/zod.ts";
 * import { jsonBody } from "./json_body.ts";
 * const app = new Hono().post("/", async (c) => c.json(await jsonBody(c, z.object({ name: z.string() }))));
 * ```
 */
export async function jsonBody<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  return validate(schema, await readJson(c));
}
