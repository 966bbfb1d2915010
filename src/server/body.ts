/**
 * Request bodies: read with a byte limit (413 beyond it, even when the
 * client sends no or a false `Content-Length`), parsed as JSON (400), and
 * validated with a zod schema (400 naming the field).
 * @module
 */
import { z } from "../deps/hono.ts";
import { HttpError } from "./http_error.ts";

function tooLarge(limit: number): HttpError {
  return new HttpError(413, "request_too_large", `the request body is larger than ${limit} bytes`);
}

/**
 * Reads a request's body as JSON, refusing more than `limit` bytes.
 *
 * @example
 * ```ts
 * import { readJsonBody } from "./body.ts";
 * const request = new Request("http://x/", { method: "POST", body: '{"a":1}' });
 * await readJsonBody(request, 1024); // { a: 1 }
 * ```
 */
export async function readJsonBody(request: Request, limit: number): Promise<unknown> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) throw tooLarge(limit);
  if (!request.body) throw new HttpError(400, "invalid_request_error", "the request has no body; send a JSON object");
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge(limit);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new HttpError(400, "invalid_request_error", "the request body is not valid UTF-8");
  }
  if (text.trim() === "") {
    throw new HttpError(400, "invalid_request_error", "the request body is empty; send a JSON object");
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new HttpError(
      400,
      "invalid_request_error",
      `the request body is not valid JSON: ${(cause as Error).message}`,
    );
  }
}

/**
 * Validates a parsed body; the first problem becomes a 400 naming its field.
 *
 * @example
 * ```ts
 * import { validate } from "./body.ts";
 * import { z } from "../deps/hono.ts";
 * const body = validate(z.object({ name: z.string() }), { name: "python" });
 * ```
 */
export function validate<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HttpError(400, "invalid_request_error", "the request body must be a JSON object");
  }
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const param = issue.path.map(String).join(".");
  throw new HttpError(
    400,
    "invalid_request_error",
    param ? `${param}: ${issue.message}` : issue.message,
    param || undefined,
  );
}
