/**
 * Request-body rules: the size limit, with Hono's `bodyLimit` (413 beyond
 * it, counted while reading when the client sends no `Content-Length`), and
 * JSON-only bodies (415 otherwise: a web page can then reach no route
 * with a "simple" cross-origin request, which browsers send without a
 * preflight only for form and text media types).
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

/** `application/json` or `application/<anything>+json`, with or without parameters. */
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;.*)?$/i;

/**
 * Middleware answering 415 to a `POST`, `PUT` or `PATCH` whose body is not
 * declared JSON.
 *
 * @example
 * ```ts
 * import { Hono } from "../deps/hono.ts";
 * import { jsonOnly } from "./limits.ts";
 * const app = new Hono().use("*", jsonOnly()).post("/", (c) => c.text("ok"));
 * ```
 */
export function jsonOnly(): MiddlewareHandler {
  return async (c, next) => {
    const method = c.req.method;
    if (method === "POST" || method === "PUT" || method === "PATCH") {
      const type = c.req.header("content-type") ?? "";
      if (!JSON_TYPE.test(type.trim())) {
        throw new ApiError(
          415,
          "invalid_request_error",
          "the request body must be JSON (Content-Type: application/json)",
          {
            headers: { "accept-post": "application/json" },
          },
        );
      }
    }
    await next();
  };
}
