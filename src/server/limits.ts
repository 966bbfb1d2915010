/**
 * The request-body limit, with Hono's `bodyLimit`: 413 beyond it, counted
 * while reading when the client sends no `Content-Length`.
 * @module
 */
import { bodyLimit, type MiddlewareHandler } from "../deps/hono.ts";
import { ApiError } from "./api_error.ts";

/**
 * Middleware refusing bodies over `maxBytes` with a JSON 413.
 *
 * @example
 * ```ts
 * import { Hono } from "../deps/hono.ts";
 * import { limitBody } from "./limits.ts";
 * const app = new Hono().post("/", limitBody(1024), (c) => c.text("ok"));
 * ```
 */
export function limitBody(maxBytes: number): MiddlewareHandler {
  return bodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw new ApiError(413, "request_too_large", `the request body is larger than ${maxBytes} bytes`);
    },
  });
}
