/**
 * {@linkcode createApp}: the HTTP service as a Hono app, an OpenAI-compatible
 * subset over one base model and many adapters. It starts no server: serve
 * `app.fetch` with `Deno.serve`, `Bun.serve` or an edge platform.
 * @module
 */
import { Hono } from "../deps/hono.ts";
import { type AppOptions, resolveAppOptions } from "./app_options.ts";
import { ApiError } from "./api_error.ts";
import { adapterRoutes } from "./routes_adapters.ts";
import { completionRoutes } from "./routes_completions.ts";
import { modelRoutes } from "./routes_models.ts";
import { errorResponse } from "./to_api_error.ts";

/**
 * Creates the service: `GET /health`, `GET /v1/models`,
 * `POST /v1/completions`, `POST /v1/chat/completions`, and (with the admin
 * token) `GET`/`POST /v1/adapters`, `DELETE /v1/adapters/:name`. Every error
 * is JSON `{ "error": { "message", "type", "param" } }` (see `toApiError`).
 *
 * @example
 * ```ts
 * import { createApp } from "./app.ts";
 * import { createAdapterPool } from "../serving/mod.ts";
 * import { loadBaseModel } from "../model/base_model.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const pool = await createAdapterPool(base, { baseName: "byte-llama" });
 * await pool.load("python", { kind: "local", path: "examples/demo/byte-llama-python-lora" });
 * const app = createApp({ pool, adminToken: "change-me-please", localRoots: ["examples/demo"] });
 * const response = await app.request("/v1/completions", {
 *   method: "POST",
 *   body: JSON.stringify({ model: "python", prompt: "def ", max_tokens: 16, temperature: 0 }),
 * });
 * console.log((await response.json()).choices[0].text);
 * ```
 */
export function createApp(options: AppOptions): Hono {
  const context = resolveAppOptions(options);
  const app = new Hono();
  modelRoutes(app, context);
  completionRoutes(app, context);
  adapterRoutes(app, context);
  app.notFound((c) =>
    new ApiError(404, "not_found_error", `no route ${c.req.method} ${new URL(c.req.url).pathname}`).getResponse()
  );
  app.onError((error) => errorResponse(error, context.onError));
  return app;
}
