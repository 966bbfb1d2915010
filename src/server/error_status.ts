/**
 * Which HTTP status and error type an error becomes: the pool's refusals,
 * peft-edge's typed errors (bad adapter files, Hub failures, bad prompts),
 * a client that went away, and anything else (500, message hidden).
 * @module
 */
import {
  AdapterConfigError,
  AdapterMismatchError,
  FileNotFoundError,
  GenerationError,
  HubError,
  OnnxModelError,
  SafetensorsError,
  UnsupportedError,
} from "../errors.ts";
import { HttpError } from "./http_error.ts";
import { PoolError } from "./pool_error.ts";

/** Statuses of the pool's refusals. */
const POOL: Record<PoolError["kind"], [number, HttpError["type"]]> = {
  not_found: [404, "not_found_error"],
  conflict: [409, "conflict_error"],
  capacity: [503, "service_unavailable"],
  busy: [503, "service_unavailable"],
  too_large: [400, "invalid_request_error"],
};

/** A Hub failure: the client's fault (bad or missing repo, no access) or the Hub's (down, offline). */
function hubStatus(error: HubError): HttpError {
  switch (error.reason) {
    case "invalid":
      return new HttpError(400, "invalid_request_error", error.message, "id", { cause: error });
    case "not_found":
      return new HttpError(404, "not_found_error", error.message, "id", { cause: error });
    case "unauthorized":
    case "gated":
    case "forbidden":
      return new HttpError(403, "permission_error", error.message, "id", { cause: error });
    default:
      return new HttpError(503, "service_unavailable", `the Hub cannot be used now: ${error.message}`, "id", {
        cause: error,
      });
  }
}

/**
 * The {@linkcode HttpError} for any error a route let through.
 *
 * @example
 * ```ts
 * import { toHttpError } from "./error_status.ts";
 * import { GenerationError } from "../errors.ts";
 * toHttpError(new GenerationError("the prompt is empty")).status; // 400
 * toHttpError(new Error("boom")).status; // 500
 * ```
 */
export function toHttpError(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  if (error instanceof PoolError) {
    const [status, type] = POOL[error.kind];
    const headers: Record<string, string> = status === 503 ? { "retry-after": "1" } : {};
    return new HttpError(status, type, error.message, undefined, { cause: error, headers });
  }
  if (error instanceof HubError) return hubStatus(error);
  if (error instanceof FileNotFoundError) {
    return new HttpError(404, "not_found_error", error.message, "id", { cause: error });
  }
  if (
    error instanceof SafetensorsError || error instanceof AdapterConfigError ||
    error instanceof AdapterMismatchError || error instanceof OnnxModelError || error instanceof UnsupportedError
  ) {
    return new HttpError(400, "invalid_request_error", `the adapter cannot be used: ${error.message}`, "id", {
      cause: error,
    });
  }
  if (error instanceof GenerationError) {
    return new HttpError(400, "invalid_request_error", error.message, error.key, { cause: error });
  }
  if (error instanceof Error && error.name === "AbortError") {
    return new HttpError(499, "client_closed_request", "the client closed the request", undefined, { cause: error });
  }
  return new HttpError(500, "server_error", "internal server error", undefined, { cause: error });
}
