/**
 * `GET /v1/adapters`, `POST /v1/adapters` and `DELETE /v1/adapters/:name`:
 * adapter management, behind the admin bearer token.
 * @module
 */
import type { Context, Hono } from "../deps/hono.ts";
import { locateAdapter } from "./adapter_id.ts";
import type { ServerContext } from "./app_options.ts";
import { bearerToken, secretsEqual } from "./auth.ts";
import { readJsonBody, validate } from "./body.ts";
import { HttpError } from "./http_error.ts";
import type { AdapterInfo } from "./pool.ts";
import { loadAdapterSchema } from "./schemas.ts";

/**
 * An adapter in the management routes' answers.
 *
 * @example
 * ```ts
 * import type { AdapterJson } from "./routes_adapters.ts";
 * declare const adapter: AdapterJson;
 * if (adapter.status === "ready") console.log(adapter.name, adapter.bytes);
 * ```
 */
export interface AdapterJson {
  /** The kind of object, as OpenAI names it. */
  object: "adapter";
  /** The name requests use as `model`. */
  name: string;
  /** The id it was loaded by (a root-relative name, a path given in code, or a Hub repo id). */
  id: string;
  /** `local` (a folder) or `hub` (a Hub repo). */
  source: "local" | "hub";
  /** The Hub revision, null for local adapters. */
  revision: string | null;
  /** `loading` until its load finishes. */
  status: "loading" | "ready";
  /** Bytes it holds, counted against the pool's byte limit. */
  bytes: number;
  /** Requests using it now. */
  in_use: number;
  /** Unix seconds. */
  loaded_at: number | null;
  /** Unix seconds. */
  last_used_at: number;
}

/**
 * An adapter as the management routes show it.
 *
 * @example
 * ```ts
 * import { adapterJson } from "./routes_adapters.ts";
 * import type { AdapterInfo } from "./pool.ts";
 * declare const info: AdapterInfo;
 * adapterJson(info).in_use;
 * ```
 */
export function adapterJson(info: AdapterInfo): AdapterJson {
  const location = info.location;
  return {
    object: "adapter",
    name: info.name,
    id: location.kind === "local" ? location.id ?? location.path : location.repo,
    source: location.kind,
    revision: location.kind === "hub" ? location.revision ?? "main" : null,
    status: info.status,
    bytes: info.bytes,
    in_use: info.inUse,
    loaded_at: info.loadedAt === undefined ? null : Math.floor(info.loadedAt / 1000),
    last_used_at: Math.floor(info.lastUsedAt / 1000),
  };
}

const CHALLENGE = { "www-authenticate": 'Bearer realm="peft-edge adapters"' };

/** Refuses the request unless it carries the admin token. */
async function requireAdmin(c: Context, context: ServerContext): Promise<void> {
  if (context.adminToken === undefined) {
    throw new HttpError(
      401,
      "authentication_error",
      "adapter management is disabled: the server has no admin token",
      undefined,
      {
        headers: CHALLENGE,
      },
    );
  }
  const token = bearerToken(c.req.header("authorization"));
  if (token === undefined || !await secretsEqual(token, context.adminToken)) {
    throw new HttpError(401, "authentication_error", "a valid admin bearer token is required", undefined, {
      headers: CHALLENGE,
    });
  }
}

/**
 * Adds the adapter-management routes.
 *
 * @example
 * ```ts
 * import { Hono } from "../deps/hono.ts";
 * import { adapterRoutes } from "./routes_adapters.ts";
 * import type { ServerContext } from "./app_options.ts";
 * declare const context: ServerContext;
 * adapterRoutes(new Hono(), context);
 * ```
 */
export function adapterRoutes(app: Hono, context: ServerContext): void {
  const { pool } = context;
  const usage = () => {
    const u = pool.usage();
    return {
      adapters: u.adapters,
      bytes: u.bytes,
      max_adapters: u.maxAdapters,
      max_bytes: Number.isFinite(u.maxBytes) ? u.maxBytes : null,
    };
  };

  app.get("/v1/adapters", async (c) => {
    await requireAdmin(c, context);
    return c.json({ object: "list", data: pool.list().map(adapterJson), usage: usage() });
  });

  app.post("/v1/adapters", async (c) => {
    await requireAdmin(c, context);
    const request = validate(loadAdapterSchema, await readJsonBody(c.req.raw, context.maxBodyBytes));
    const location = await locateAdapter(request.id, request.revision, context);
    const { info, created } = await pool.load(request.name, location);
    return c.json(adapterJson(info), created ? 201 : 200);
  });

  app.delete("/v1/adapters/:name", async (c) => {
    await requireAdmin(c, context);
    const name = c.req.param("name");
    await pool.delete(name);
    return c.json({ object: "adapter", name, deleted: true });
  });
}
