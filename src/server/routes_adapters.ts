/**
 * `GET /v1/adapters`, `POST /v1/adapters` and `DELETE /v1/adapters/:name`:
 * adapter management, behind the admin bearer token.
 * @module
 */
import type { Hono } from "../deps/hono.ts";
import { locateAdapter } from "../serving/adapter_id.ts";
import { type AdapterLocation, describeLocation } from "../serving/location.ts";
import type { AdapterInfo } from "../serving/pool.ts";
import { adminAuth } from "./admin_auth.ts";
import type { ServerContext } from "./app_options.ts";
import { jsonBody } from "./json_body.ts";
import { limitBody } from "./limits.ts";
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
  /**
   * The id it was loaded by (a root-relative name, a path given in code, a
   * Hub repo id, a URL without credentials or query, or a source's id).
   */
  id: string;
  /** `local` (a folder), `hub` (a Hub repo), `url` (an http(s) folder) or `source` (a `FileSource` given in code). */
  source: AdapterLocation["kind"];
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
 * import type { AdapterInfo } from "../serving/pool.ts";
 * declare const info: AdapterInfo;
 * adapterJson(info).in_use;
 * ```
 */
export function adapterJson(info: AdapterInfo): AdapterJson {
  const location = info.location;
  return {
    object: "adapter",
    name: info.name,
    id: location.kind === "local"
      ? location.id ?? location.path
      : location.kind === "hub"
      ? location.repo
      : describeLocation(location),
    source: location.kind,
    revision: location.kind === "hub" ? location.revision ?? "main" : null,
    status: info.status,
    bytes: info.bytes,
    in_use: info.inUse,
    loaded_at: info.loadedAt === undefined ? null : Math.floor(info.loadedAt / 1000),
    last_used_at: Math.floor(info.lastUsedAt / 1000),
  };
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
  const admin = adminAuth(context.adminToken);
  const usage = () => {
    const u = pool.usage();
    return {
      adapters: u.adapters,
      bytes: u.bytes,
      max_adapters: u.maxAdapters,
      max_bytes: Number.isFinite(u.maxBytes) ? u.maxBytes : null,
    };
  };

  app.get("/v1/adapters", admin, (c) => {
    return c.json({ object: "list", data: pool.list().map(adapterJson), usage: usage() });
  });

  app.post("/v1/adapters", admin, limitBody(context.maxBodyBytes), async (c) => {
    const request = await jsonBody(c, loadAdapterSchema, context.bodyTimeoutMs);
    const location = await locateAdapter(request.id, request.revision, context);
    const { info, created } = await pool.load(request.name, location);
    return c.json(adapterJson(info), created ? 201 : 200);
  });

  app.delete("/v1/adapters/:name", admin, async (c) => {
    const name = c.req.param("name");
    await pool.delete(name);
    return c.json({ object: "adapter", name, deleted: true });
  });
}
