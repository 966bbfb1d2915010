/**
 * Options of `createApp` and their defaults.
 * @module
 */
import type { AdapterPool } from "../serving/pool.ts";
import { BEARER_TOKEN } from "./admin_auth.ts";
import type { TokenLimits } from "./request_options.ts";

/**
 * What the service serves and how it protects itself.
 *
 * @example
 * ```ts
 * import type { AppOptions } from "./app_options.ts";
 * import type { AdapterPool } from "../serving/pool.ts";
import { BEARER_TOKEN } from "./admin_auth.ts";
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
  /** Folders whose subfolders `POST /v1/adapters` may load by name. */
  localRoots?: readonly string[];
  /** Whether `POST /v1/adapters` may load Hub repo ids (default true). */
  allowHub?: boolean;
  /** Largest request body in bytes (default 1 MiB). */
  maxBodyBytes?: number;
  /** Largest `max_tokens` accepted (default 512). */
  maxTokens?: number;
  /** `max_tokens` of requests without one (default 16, OpenAI's default). */
  defaultMaxTokens?: number;
  /** Receives unexpected errors (answered 500); default `console.error`. */
  onError?: (error: unknown) => void;
}

/**
 * Options with defaults applied, as the routes use them.
 *
 * @example
 * ```ts
 * import { resolveAppOptions } from "./app_options.ts";
 * import type { AdapterPool } from "../serving/pool.ts";
import { BEARER_TOKEN } from "./admin_auth.ts";
 * declare const pool: AdapterPool;
 * resolveAppOptions({ pool }).limits.maxTokens; // 512
 * ```
 */
export interface ServerContext {
  /** The base model and its adapters. */
  readonly pool: AdapterPool;
  /** The admin token, if adapter management is on. */
  readonly adminToken?: string;
  /** Folders adapters may be loaded from by name. */
  readonly localRoots: readonly string[];
  /** Whether Hub repo ids may be loaded. */
  readonly allowHub: boolean;
  /** Largest request body in bytes. */
  readonly maxBodyBytes: number;
  /** `max_tokens` cap and default. */
  readonly limits: TokenLimits;
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

/**
 * Applies defaults and checks the options (a `RangeError` names a bad one).
 *
 * @example
 * ```ts
 * import { resolveAppOptions } from "./app_options.ts";
 * import type { AdapterPool } from "../serving/pool.ts";
import { BEARER_TOKEN } from "./admin_auth.ts";
 * declare const pool: AdapterPool;
 * const context = resolveAppOptions({ pool, maxTokens: 128 });
 * ```
 */
export function resolveAppOptions(options: AppOptions): ServerContext {
  if (options.adminToken !== undefined && options.adminToken.length < 8) {
    throw new RangeError("adminToken must be at least 8 characters");
  }
  if (options.adminToken !== undefined && !BEARER_TOKEN.test(options.adminToken)) {
    throw new RangeError("adminToken must be a bearer token: letters, digits and -._~+/, optionally ending in '='");
  }
  const maxTokens = positive("maxTokens", options.maxTokens, 512);
  return {
    pool: options.pool,
    adminToken: options.adminToken,
    localRoots: [...(options.localRoots ?? [])],
    allowHub: options.allowHub ?? true,
    maxBodyBytes: positive("maxBodyBytes", options.maxBodyBytes, 1 << 20),
    limits: {
      maxTokens,
      defaultMaxTokens: Math.min(maxTokens, positive("defaultMaxTokens", options.defaultMaxTokens, 16)),
    },
    onError: options.onError ?? ((error) => console.error(error)),
  };
}
