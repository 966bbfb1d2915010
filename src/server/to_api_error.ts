/**
 * The one mapping from errors to HTTP answers: the pool's refusals
 * ({@linkcode PoolError} kinds), peft-edge's typed errors (bad adapter
 * files, Hub failures, bad prompts), a client that went away, Hono's own
 * exceptions, and anything else (500, message hidden). Errors about files
 * are answered with a generic message (theirs may quote a file's content or
 * hold server paths; the log gets them), and every message sent has
 * absolute paths blanked out.
 * @module
 */
import { HTTPException } from "../deps/hono.ts";
import {
  AdapterConfigError,
  AdapterMismatchError,
  FileAccessError,
  FileNotFoundError,
  GenerationError,
  HubError,
  OnnxModelError,
  SafetensorsError,
  UnsupportedError,
  UrlError,
} from "../errors.ts";
import { PoolError } from "../serving/pool_error.ts";
import { ApiError, type ErrorType } from "./api_error.ts";
import type { ServerLogger } from "./app_options.ts";

/** Status and type of each pool refusal. */
const POOL: Record<PoolError["kind"], [number, ErrorType]> = {
  invalid: [400, "invalid_request_error"],
  not_found: [404, "not_found_error"],
  conflict: [409, "conflict_error"],
  capacity: [503, "service_unavailable"],
  busy: [503, "service_unavailable"],
  too_large: [400, "invalid_request_error"],
};

/** Type of a bare Hono `HTTPException`, by status. */
function typeOfStatus(status: number): ErrorType {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 409) return "conflict_error";
  if (status === 413) return "request_too_large";
  if (status === 503) return "service_unavailable";
  return status < 500 ? "invalid_request_error" : "server_error";
}

/** A Hub failure: the client's fault (bad or missing repo, no access) or the Hub's (down, offline). */
function hubError(error: HubError): ApiError {
  const options = { param: "id", cause: error };
  const message = redactPaths(error.message);
  switch (error.reason) {
    case "invalid":
      return new ApiError(400, "invalid_request_error", message, options);
    case "not_found":
      return new ApiError(404, "not_found_error", message, options);
    case "unauthorized":
    case "gated":
    case "forbidden":
      return new ApiError(403, "permission_error", message, options);
    case "cache": // the server's own storage failed, not the Hub
      return new ApiError(500, "server_error", message, options);
    default:
      return new ApiError(503, "service_unavailable", `the Hub cannot be used now: ${message}`, options);
  }
}

/** A failure fetching an adapter by URL: the URL's fault (bad, no access) or the remote server's. */
function urlError(error: UrlError): ApiError {
  const options = { param: "id", cause: error };
  const message = redactPaths(error.message);
  switch (error.reason) {
    case "invalid":
      return new ApiError(400, "invalid_request_error", message, options);
    case "unauthorized":
    case "forbidden":
      return new ApiError(403, "permission_error", message, options);
    default: // timeout, network, server, truncated: the remote end failed
      return new ApiError(502, "server_error", `the adapter's server failed: ${message}`, options);
  }
}

/** Absolute paths (POSIX, `file:` URLs, Windows drives) in a message, blanked out. */
const ABSOLUTE_PATH = /(?:file:\/\/|(?<![\w.:/-])\/(?=[^\s/"'`])|\b[A-Za-z]:[\\/])[^\s"'`,;)]*/g;

/**
 * A message with its absolute paths replaced by `<path>`.
 *
 * @example
 * ```ts
 * import { redactPaths } from "./to_api_error.ts";
 * redactPaths("adapter x is already loaded from /srv/adapters/x"); // "adapter x is already loaded from <path>"
 * ```
 */
export function redactPaths(message: string): string {
  return message.replace(ABSOLUTE_PATH, "<path>");
}

/** A file's base name when it is a plain file name, safe to show. */
function fileName(file: string | undefined): string | undefined {
  const name = file?.split(/[\\/]/).pop();
  return name && /^[\w.-]{1,100}$/.test(name) ? name : undefined;
}

/** What a client is told about a bad adapter file: the kind of problem and the file's name, nothing it contains. */
function badAdapterMessage(error: Error & { file?: string }): string {
  const where = fileName(error.file);
  const what = error instanceof SafetensorsError
    ? "its weights file is malformed"
    : error instanceof AdapterConfigError
    ? "its configuration is invalid for PEFT"
    : error instanceof AdapterMismatchError
    ? "it does not fit the base model"
    : error instanceof OnnxModelError
    ? "the base model cannot be patched with it"
    : "it uses a feature this server does not support";
  return `the adapter cannot be used: ${what}${where ? ` (${where})` : ""}; details are in the server log`;
}

/** Errors that mean the adapter's files cannot be used with this base. */
function isBadAdapter(error: unknown): error is Error {
  return error instanceof SafetensorsError || error instanceof AdapterConfigError ||
    error instanceof AdapterMismatchError || error instanceof OnnxModelError || error instanceof UnsupportedError;
}

/**
 * The {@linkcode ApiError} for any error a route let through.
 *
 * @example
 * ```ts
 * import { toApiError } from "./to_api_error.ts";
 * import { GenerationError } from "../errors.ts";
 * toApiError(new GenerationError("the prompt is empty")).status; // 400
 * toApiError(new Error("boom")).status; // 500
 * ```
 */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof PoolError) {
    const [status, type] = POOL[error.kind];
    const headers: Record<string, string> = status === 503 ? { "retry-after": "1" } : {};
    return new ApiError(status, type, redactPaths(error.message), { param: error.field, cause: error, headers });
  }
  if (error instanceof HubError) return hubError(error);
  if (error instanceof UrlError) return urlError(error);
  if (error instanceof FileAccessError) {
    // A file that leaves its root (a symlink out, `..`): refused without saying where it points.
    const name = fileName(error.file);
    const message = `a file of the adapter${name ? ` (${name})` : ""} is outside its folder and was not read; ` +
      "details are in the server log";
    return new ApiError(400, "invalid_request_error", message, { param: "id", cause: error });
  }
  if (error instanceof FileNotFoundError) {
    const name = fileName(error.file);
    const message = `a file the adapter needs${name ? ` (${name})` : ""} was not found; details are in the server log`;
    return new ApiError(404, "not_found_error", message, { param: "id", cause: error });
  }
  if (isBadAdapter(error)) {
    return new ApiError(400, "invalid_request_error", badAdapterMessage(error), { param: "id", cause: error });
  }
  if (error instanceof GenerationError) {
    return new ApiError(400, "invalid_request_error", redactPaths(error.message), { param: error.key, cause: error });
  }
  if (error instanceof Error && error.name === "AbortError") {
    return new ApiError(499, "client_closed_request", "the client closed the request", { cause: error });
  }
  if (error instanceof HTTPException) {
    return new ApiError(error.status, typeOfStatus(error.status), error.message || "request refused", {
      cause: error,
    });
  }
  return new ApiError(500, "server_error", "internal server error", { cause: error });
}

/** Errors whose message the client does not see: the log gets it. */
function hidden(error: unknown): error is Error {
  return error instanceof FileNotFoundError || isBadAdapter(error) || error instanceof HubError ||
    error instanceof UrlError || error instanceof FileAccessError;
}

/**
 * {@linkcode toApiError}, reporting what the client is not told:
 * `onError` receives the errors answered 500, `logger.warn` the file and
 * Hub errors answered with a generic message.
 *
 * @example
 * ```ts
 * import { reportedApiError } from "./to_api_error.ts";
 * reportedApiError(new Error("boom"), { logger: console, onError: console.error }).status; // 500
 * ```
 */
export function reportedApiError(
  error: unknown,
  report: { logger: ServerLogger; onError: (error: unknown) => void },
): ApiError {
  const api = toApiError(error);
  if (api.status === 500) report.onError(error);
  else if (hidden(error)) {
    // `detail` (PeftEdgeError) holds what the message leaves out: absolute paths, a symlink's target, the OS error.
    const detail = (error as { detail?: string }).detail;
    report.logger.warn(`${api.status} ${error.name}: ${error.message}${detail ? ` (${detail})` : ""}`, error);
  }
  return api;
}

/**
 * The response for an error: Hono's middleware exceptions that carry a
 * response (shaped by this service's options) as they are, the rest through
 * {@linkcode reportedApiError}.
 *
 * @example
 * ```ts
 * import { errorResponse } from "./to_api_error.ts";
 * errorResponse(new Error("boom"), { logger: console, onError: console.error }).status; // 500
 * ```
 */
export function errorResponse(
  error: unknown,
  report: { logger: ServerLogger; onError: (error: unknown) => void },
): Response {
  if (error instanceof HTTPException && !(error instanceof ApiError) && error.res) return error.getResponse();
  return reportedApiError(error, report).getResponse();
}
