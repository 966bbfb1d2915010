/**
 * {@linkcode HttpError} and the JSON error body every route answers with:
 * `{ "error": { "message", "type", "param" } }`, OpenAI's shape.
 * @module
 */

/**
 * The `type` of an error body, following OpenAI's names where it has them.
 *
 * @example
 * ```ts
 * import type { ErrorType } from "./http_error.ts";
 * const type: ErrorType = "invalid_request_error";
 * ```
 */
export type ErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "not_found_error"
  | "conflict_error"
  | "request_too_large"
  | "service_unavailable"
  | "client_closed_request"
  | "server_error";

/**
 * An error with its HTTP status and error type.
 *
 * @example
 * ```ts
 * import { HttpError } from "./http_error.ts";
 * throw new HttpError(400, "invalid_request_error", "max_tokens must be at most 512", "max_tokens");
 * ```
 */
export class HttpError extends Error {
  /** An error answered with `status`, `type` and `message`; `param` names the request field at fault. */
  constructor(
    readonly status: number,
    readonly type: ErrorType,
    message: string,
    readonly param?: string,
    options?: { cause?: unknown; headers?: Record<string, string> },
  ) {
    super(message, options);
    this.name = "HttpError";
    this.headers = options?.headers ?? {};
  }

  /** Extra response headers (`WWW-Authenticate`, `Retry-After`). */
  readonly headers: Record<string, string>;
}

/**
 * The JSON response for an error.
 *
 * @example
 * ```ts
 * import { errorResponse, HttpError } from "./http_error.ts";
 * const response = errorResponse(new HttpError(404, "not_found_error", "no model named x"));
 * console.log(response.status); // 404
 * ```
 */
export function errorResponse(error: HttpError): Response {
  const body = { error: { message: error.message, type: error.type, param: error.param ?? null, code: null } };
  return new Response(JSON.stringify(body), {
    status: error.status,
    headers: { "content-type": "application/json; charset=utf-8", ...error.headers },
  });
}
