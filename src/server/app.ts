/**
 * {@linkcode createApp}: the HTTP service as a Hono app, an OpenAI-compatible
 * subset over one base model and many adapters. It starts no server: serve
 * `app.fetch` with `listen` (src/server/listen.ts: slow clients cut off,
 * connections capped, graceful shutdown), `Deno.serve`, `Bun.serve` or an
 * edge platform.
 * @module
 */
import { cors, Hono } from "../deps/hono.ts";
import { type AppOptions, resolveAppOptions } from "./app_options.ts";
import { ApiError } from "./api_error.ts";
import { RequestGate } from "./gate.ts";
import { jsonOnly } from "./limits.ts";
import { adapterRoutes } from "./routes_adapters.ts";
import { completionRoutes } from "./routes_completions.ts";
import { modelRoutes } from "./routes_models.ts";
import { errorResponse } from "./to_api_error.ts";

/**
 * The service as a web-standard fetch handler: pass `fetch` to `Deno.serve`, `Bun.serve`, `listen`
 * or an edge platform, or mount it in an app of your own (Hono: `outer.mount("/", service.fetch)`).
 */
export interface PeftEdgeApp {
  /** Answers one HTTP request. */
  fetch(request: Request): Response | Promise<Response>;
}

/**
 * Creates the service: `GET /health`, `GET /v1/models`,
 * `POST /v1/completions`, `POST /v1/chat/completions` (behind `apiKey`, if
 * set), and (with the admin token) `GET`/`POST /v1/adapters`,
 * `DELETE /v1/adapters/:name`. Every `POST` body must be JSON (415
 * otherwise); generations beyond `maxInFlight` wait in a bounded queue (503
 * with `Retry-After` beyond it). Every error is JSON
 * `{ "error": { "message", "type", "param" } }` (see `toApiError`).
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
 * const response = await app.fetch(
 *   new Request("http://localhost/v1/completions", {
 *     method: "POST",
 *     headers: { "content-type": "application/json" },
 *     body: JSON.stringify({ model: "python", prompt: "def ", max_tokens: 16, temperature: 0 }),
 *   }),
 * );
 * console.log((await response.json()).choices[0].text);
 * ```
 */
export function createApp(options: AppOptions): PeftEdgeApp {
  const context = resolveAppOptions(options);
  const gate = new RequestGate(context.gate);
  if (context.stopSignal?.aborted) gate.stop();
  else context.stopSignal?.addEventListener("abort", () => gate.stop(), { once: true });
  const app = new Hono();
  if (context.cors) {
    const origin = context.cors.origin;
    app.use(
      "*",
      cors({
        origin: typeof origin === "string" ? origin : [...origin],
        allowMethods: ["GET", "POST", "DELETE", "OPTIONS"],
        allowHeaders: ["authorization", "content-type"],
        exposeHeaders: ["retry-after"],
        maxAge: context.cors.maxAge ?? 600,
      }),
    );
  }
  app.use("*", jsonOnly());
  modelRoutes(app, context);
  completionRoutes(app, context, gate);
  adapterRoutes(app, context);
  app.notFound((c) =>
    new ApiError(404, "not_found_error", `no route ${c.req.method} ${new URL(c.req.url).pathname}`).getResponse()
  );
  app.onError((error) => errorResponse(error, context));
  return app;
}
