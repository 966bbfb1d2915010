/**
 * {@linkcode ApiError}: Hono's `HTTPException` answered with OpenAI's error
 * body, `{ "error": { "message", "type", "param", "code" } }`.
 * @module
 */
import { HTTPException } from "../deps/hono.ts";

/**
 * The `type` of an error body, following OpenAI's names where it has them.
 *
 * @example
 * ```ts
 * import type { ErrorType } from "./api_error.ts";
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

/** A status Hono's `HTTPException` accepts (499, client closed request, is cast: Hono lists official codes). */
type Status = NonNullable<ConstructorParameters<typeof HTTPException>[0]>;

/**
 * Options of {@linkcode ApiError}.
 *
 * @example
 * ```ts
 * import type { ApiErrorOptions } from "./api_error.ts";
 * const options: ApiErrorOptions = { param: "max_tokens", headers: { "retry-after": "1" } };
 * ```
 */
export interface ApiErrorOptions {
  /** The request field at fault. */
  param?: string;
  /** Extra response headers (`WWW-Authenticate`, `Retry-After`). */
  headers?: Record<string, string>;
  /** The error behind it. */
  cause?: unknown;
}

/**
 * An HTTP error of the service: status, OpenAI error type, message and the
 * field at fault. Throw it from a route; the app answers it as JSON.
 *
 * @example
 * ```ts
 * import { ApiError } from "./api_error.ts";
 * const error = new ApiError(400, "invalid_request_error", "max_tokens must be at most 512", { param: "max_tokens" });
 * console.log(error.getResponse().status); // 400
 * ```
 */
export class ApiError extends HTTPException {
  /** The error body's `type`. */
  readonly type: ErrorType;
  /** The request field at fault, if any. */
  readonly param?: string;
  /** Extra response headers. */
  readonly headers: Readonly<Record<string, string>>;

  /** An error answered with `status`, `type` and `message`. */
  constructor(status: number, type: ErrorType, message: string, options: ApiErrorOptions = {}) {
    super(status as Status, { message, cause: options.cause });
    this.name = "ApiError";
    this.type = type;
    this.param = options.param;
    this.headers = options.headers ?? {};
  }

  /** The error body, as a server-sent event carries it too. */
  body(): { error: { message: string; type: ErrorType; param: string | null; code: null } } {
    return { error: { message: this.message, type: this.type, param: this.param ?? null, code: null } };
  }

  /** The JSON response (a new one on every call). */
  override getResponse(): Response {
    return new Response(JSON.stringify(this.body()), {
      status: this.status,
      headers: { "content-type": "application/json; charset=utf-8", ...this.headers },
    });
  }
}
