/**
 * The bearer tokens of the service, with Hono's `bearerAuth`: the admin
 * token of the adapter-management routes and the optional API key of the
 * inference routes. The token is compared by SHA-256 digest without stopping
 * early, so neither its content nor its length leaks through timing (Hono's
 * default compare also walks the raw strings, whose length it would leak).
 * Every refusal is a JSON 401 with a `WWW-Authenticate` challenge.
 * @module
 */
import { bearerAuth, type MiddlewareHandler } from "../deps/hono.ts";
import { ApiError } from "./api_error.ts";

/** The characters of a bearer token (RFC 6750's b64token), as Hono's `bearerAuth` accepts them. */
export const BEARER_TOKEN = /^[A-Za-z0-9._~+/-]+=*$/;

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/**
 * Whether two secrets are equal, taking the same time wherever they differ.
 *
 * @example
 * ```ts
 * import { secretsEqual } from "./admin_auth.ts";
 * await secretsEqual("s3cret", "s3cret"); // true
 * await secretsEqual("s3cret", "guess"); // false
 * ```
 */
export async function secretsEqual(presented: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([digest(presented), digest(expected)]);
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function unauthorized(message: string, realm = "peft-edge adapters"): ApiError {
  return new ApiError(401, "authentication_error", message, {
    headers: { "www-authenticate": `Bearer realm="${realm}"` },
  });
}

/** Hono's `bearerAuth` with every refusal the same JSON 401 (Hono answers a malformed header 400). */
function requireBearer(token: string, refusal: () => ApiError): MiddlewareHandler {
  const refuse = { message: () => refusal().getResponse() };
  return bearerAuth({
    verifyToken: (presented) => secretsEqual(presented, token),
    noAuthenticationHeader: refuse,
    invalidAuthenticationHeader: refuse,
    invalidToken: refuse,
  });
}

/**
 * Middleware requiring `Authorization: Bearer <adminToken>`; without an
 * admin token every request is refused (management disabled).
 *
 * @example
 * ```ts
 * import { Hono } from "../deps/hono.ts";
 * import { adminAuth } from "./admin_auth.ts";
 * const app = new Hono().get("/admin", adminAuth("change-me-please"), (c) => c.text("ok"));
 * ```
 */
export function adminAuth(adminToken: string | undefined): MiddlewareHandler {
  if (adminToken === undefined) {
    return () => {
      throw unauthorized("adapter management is disabled: the server has no admin token");
    };
  }
  return requireBearer(adminToken, () => unauthorized("a valid admin bearer token is required"));
}

/**
 * Middleware requiring `Authorization: Bearer <apiKey>` on the inference
 * routes; without a key it lets every request through.
 *
 * @example
 * ```ts
 * import { Hono } from "../deps/hono.ts";
 * import { apiKeyAuth } from "./admin_auth.ts";
 * const app = new Hono().post("/v1/completions", apiKeyAuth("sk-local-0123456789"), (c) => c.json({}));
 * ```
 */
export function apiKeyAuth(apiKey: string | undefined): MiddlewareHandler {
  if (apiKey === undefined) return (_c, next) => next();
  return requireBearer(apiKey, () => unauthorized("a valid API key is required (Authorization: Bearer)", "peft-edge"));
}
