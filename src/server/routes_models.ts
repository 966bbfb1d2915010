/**
 * `GET /health` (public) and `GET /v1/models` (behind the API key, if any): read-only.
 * @module
 */
import type { Hono } from "../deps/hono.ts";
import { apiKeyAuth } from "./admin_auth.ts";
import type { ServerContext } from "./app_options.ts";
import { modelEntry } from "./openai_shapes.ts";

/**
 * Adds the health and model-list routes.
 *
 * @example
 * ```ts
 * import { Hono } from "../deps/hono.ts";
 * import { modelRoutes } from "./routes_models.ts";
 * import type { ServerContext } from "./app_options.ts";
 * declare const context: ServerContext;
 * modelRoutes(new Hono(), context);
 * ```
 */
export function modelRoutes(app: Hono, context: ServerContext): void {
  const started = Math.floor(Date.now() / 1000);
  const { pool } = context;

  app.get("/health", (c) => {
    const usage = pool.usage();
    return c.json({
      status: "ok",
      model: pool.baseName,
      adapters: usage.adapters,
      active: usage.active,
    });
  });

  app.get("/v1/models", apiKeyAuth(context.apiKey), (c) => {
    const data = [modelEntry(pool.baseName, started, null)];
    for (const adapter of pool.list()) {
      if (adapter.status !== "ready") continue;
      data.push(modelEntry(adapter.name, Math.floor((adapter.loadedAt ?? Date.now()) / 1000), pool.baseName));
    }
    return c.json({ object: "list", data });
  });
}
