/**
 * Options of `createApp` and their defaults.
 * @module
 */
import type { AdapterPool } from "../serving/pool.ts";
import { BEARER_TOKEN } from "./admin_auth.ts";
import type { GateLimits } from "./gate.ts";
import type { TokenLimits } from "./request_options.ts";

/**
 * Where the service writes what it does not tell clients: the details of
 * errors answered with a generic message (file errors, which may hold paths
 * or file contents) and of unexpected ones (answered 500).
 *
 * @example
 * ```ts
 * import type { ServerLogger } from "./app_options.ts";
 * const lines: string[] = [];
 * const logger: ServerLogger = { warn: (m) => lines.push(m), error: (m) => lines.push(m) };
 * ```
 */
export interface ServerLogger {
  /** A request refused because of a file or the Hub; `detail` is the error. */
  warn(message: string, detail?: unknown): void;
  /** Something unexpected (answered 500, or a streamed response that failed). */
  error(message: string, detail?: unknown): void;
}

/**
 * Cross-origin access (Hono's `cors` middleware); off unless set.
 *
 * @example
 * ```ts
 * import type { CorsSettings } from "./app_options.ts";
 * const cors: CorsSettings = { origin: ["https://app.example"], maxAge: 600 };
 * ```
 */
export interface CorsSettings {
  /** Origins allowed: one, a list, or `"*"` (any origin; never with credentials). */
  origin: string | readonly string[];
  /** Seconds a browser may cache a preflight answer (default 600). */
  maxAge?: number;
}

/**
 * What the service serves and how it protects itself.
 *
 * @example
 * ```ts
 * import type { AppOptions } from "./app_options.ts";
 * import type { AdapterPool } from "../serving/pool.ts";
 * declare const pool: AdapterPool;
 * const options: AppOptions = { pool, adminToken: "change-me", localRoots: ["/srv/adapters"], maxTokens: 256 };
 * ```
 */
export interface AppOptions {
  /** The base model and its adapters (see `createAdapterPool`). */
  pool: AdapterPool;
  /**
   * Bearer token of the adapter-management routes (`/v1/adapters`). Without
   * one those routes answer 401: adapters can then only be loaded in code.
   */
  adminToken?: string;
  /**
   * Bearer token of the inference routes (`/v1/models`, `/v1/completions`,
   * `/v1/chat/completions`); without one they are open. The admin token
   * does not open them, nor this key the admin routes.
   */
  apiKey?: string;
  /** Folders whose subfolders `POST /v1/adapters` may load by name. */
  localRoots?: readonly string[];
  /** Whether `POST /v1/adapters` may load Hub repo ids (default true). */
  allowHub?: boolean;
  /** Largest request body in bytes (default 1 MiB). */
  maxBodyBytes?: number;
  /** Time a client has to send its whole request body (default 30 s; 408 after). */
  bodyTimeoutMs?: number;
  /** Largest `max_tokens` accepted (default 512). */
  maxTokens?: number;
  /** `max_tokens` of requests without one (default 16, OpenAI's default). */
  defaultMaxTokens?: number;
  /** Generation requests handled at once (default the pool's `maxActive`). */
  maxInFlight?: number;
  /** Generation requests waiting for a turn at most (default 64; beyond: 503 with `Retry-After`). */
  maxQueued?: number;
  /** How long a request may wait for a turn (default 30 s; 503 after). */
  queueTimeoutMs?: number;
  /**
   * Stops the service when aborted: new generation requests get 503 and the
   * generations running are cancelled (a streamed one ends with an error
   * event). `listen`'s `shutdown` aborts it once its grace has passed.
   */
  stopSignal?: AbortSignal;
  /** Cross-origin access; off by default (browsers then refuse cross-origin calls). */
  cors?: CorsSettings;
  /** Where error details go (default `console`). */
  logger?: ServerLogger;
  /** Receives unexpected errors (answered 500); default `logger.error`. */
  onError?: (error: unknown) => void;
}

/**
 * Options with defaults applied, as the routes use them.
 *
 * @example
 * ```ts
 * import { resolveAppOptions } from "./app_options.ts";
 * import type { AdapterPool } from "../serving/pool.ts";
 * declare const pool: AdapterPool;
 * resolveAppOptions({ pool }).limits.maxTokens; // 512
 * ```
 */
export interface ServerContext {
  /** The base model and its adapters. */
  readonly pool: AdapterPool;
  /** The admin token, if adapter management is on. */
  readonly adminToken?: string;
  /** The inference routes' key, if they need one. */
  readonly apiKey?: string;
  /** Folders adapters may be loaded from by name. */
  readonly localRoots: readonly string[];
  /** Whether Hub repo ids may be loaded. */
  readonly allowHub: boolean;
  /** Largest request body in bytes. */
  readonly maxBodyBytes: number;
  /** Time to read a request body. */
  readonly bodyTimeoutMs: number;
  /** `max_tokens` cap and default. */
  readonly limits: TokenLimits;
  /** Turns of generation requests. */
  readonly gate: GateLimits;
  /** Aborted when the service stops. */
  readonly stopSignal?: AbortSignal;
  /** Cross-origin access, if on. */
  readonly cors?: CorsSettings;
  /** Where error details go. */
  readonly logger: ServerLogger;
  /** Receives unexpected errors. */
  readonly onError: (error: unknown) => void;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  const n = value ?? fallback;
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
  }
  return n;
}

function checkToken(name: string, token: string | undefined): void {
  if (token === undefined) return;
  if (token.length < 8) throw new RangeError(`${name} must be at least 8 characters`);
  if (!BEARER_TOKEN.test(token)) {
    throw new RangeError(`${name} must be a bearer token: letters, digits and -._~+/, optionally ending in '='`);
  }
}

/**
 * Applies defaults and checks the options (a `RangeError` names a bad one).
 *
 * @example
 * ```ts
 * import { resolveAppOptions } from "./app_options.ts";
 * import type { AdapterPool } from "../serving/pool.ts";
 * declare const pool: AdapterPool;
 * const context = resolveAppOptions({ pool, maxTokens: 128 });
 * ```
 */
export function resolveAppOptions(options: AppOptions): ServerContext {
  checkToken("adminToken", options.adminToken);
  checkToken("apiKey", options.apiKey);
  if (options.apiKey !== undefined && options.apiKey === options.adminToken) {
    throw new RangeError("apiKey must differ from adminToken");
  }
  const maxTokens = positive("maxTokens", options.maxTokens, 512);
  const logger = options.logger ?? console;
  return {
    pool: options.pool,
    adminToken: options.adminToken,
    apiKey: options.apiKey,
    localRoots: [...(options.localRoots ?? [])],
    allowHub: options.allowHub ?? true,
    maxBodyBytes: positive("maxBodyBytes", options.maxBodyBytes, 1 << 20),
    bodyTimeoutMs: positive("bodyTimeoutMs", options.bodyTimeoutMs, 30_000),
    limits: {
      maxTokens,
      defaultMaxTokens: Math.min(maxTokens, positive("defaultMaxTokens", options.defaultMaxTokens, 16)),
    },
    gate: {
      maxInFlight: positive("maxInFlight", options.maxInFlight, options.pool.usage().maxActive),
      maxQueued: options.maxQueued === 0 ? 0 : positive("maxQueued", options.maxQueued, 64),
      queueTimeoutMs: positive("queueTimeoutMs", options.queueTimeoutMs, 30_000),
    },
    stopSignal: options.stopSignal,
    cors: options.cors,
    logger,
    onError: options.onError ?? ((error) => logger.error("unexpected error", error)),
  };
}
