/**
 * `POST /v1/completions` and `POST /v1/chat/completions`: validated, capped,
 * run on the base or an adapter, answered as one JSON body or as
 * server-sent events ending with `data: [DONE]`.
 * @module
 */
import type { Hono } from "../deps/hono.ts";
import { apiKeyAuth } from "./admin_auth.ts";
import type { ServerContext } from "./app_options.ts";
import { eventStream } from "./event_stream.ts";
import { jsonBody } from "./json_body.ts";
import { limitBody } from "./limits.ts";
import { chatBody, chatChunk, completionBody, finishReason, responseHead, usageChunk } from "./openai_shapes.ts";
import { chatOptions, chatPrompt, completionPrompt, generationOptions } from "./request_options.ts";
import { collect, startGeneration, streamEvents } from "./run_generation.ts";
import { chatSchema, completionSchema } from "./schemas.ts";
import type { RequestGate } from "./gate.ts";
import { reportedApiError } from "./to_api_error.ts";

/**
 * Adds the two generation routes.
 *
 * @example
 * ```ts
 * import { Hono } from "../deps/hono.ts";
 * import { completionRoutes } from "./routes_completions.ts";
 * import { RequestGate } from "./gate.ts";
 * import type { ServerContext } from "./app_options.ts";
 * declare const context: ServerContext;
 * completionRoutes(new Hono(), context, new RequestGate(context.gate));
 * ```
 */
export function completionRoutes(app: Hono, context: ServerContext, gate: RequestGate): void {
  const { pool, limits, bodyTimeoutMs, stopSignal } = context;
  const guard = [apiKeyAuth(context.apiKey), limitBody(context.maxBodyBytes), gate.middleware()] as const;
  const reportError = (error: unknown) => reportedApiError(error, context);

  app.post("/v1/completions", ...guard, async (c) => {
    const request = await jsonBody(c, completionSchema, bodyTimeoutMs);
    const options = generationOptions(request, limits);
    const head = responseHead("cmpl", request.model);
    const run = await startGeneration(
      pool,
      request.model,
      completionPrompt(request),
      options,
      c.req.raw.signal,
      stopSignal,
    );
    if (!request.stream) {
      const result = await collect(run);
      return c.json(completionBody(head, result.text, finishReason(result.finishReason), result));
    }
    const withUsage = request.stream_options?.include_usage === true;
    const events = streamEvents(
      run,
      [],
      (text) => completionBody(head, text, null),
      (result) => [
        completionBody(head, "", finishReason(result.finishReason)),
        ...(withUsage ? [usageChunk(head, "text_completion", result)] : []),
      ],
    );
    run.detach(); // from now on the body's cancellation tells that the client left
    return eventStream(c, events, reportError, () => run.stop());
  });

  app.post("/v1/chat/completions", ...guard, async (c) => {
    const request = await jsonBody(c, chatSchema, bodyTimeoutMs);
    const options = chatOptions(request, limits);
    const head = responseHead("chatcmpl", request.model);
    const run = await startGeneration(pool, request.model, chatPrompt(request), options, c.req.raw.signal, stopSignal);
    if (!request.stream) return c.json(chatBody(head, await collect(run)));
    const withUsage = request.stream_options?.include_usage === true;
    const events = streamEvents(
      run,
      [chatChunk(head, { role: "assistant", content: "" }, null)],
      (text) => chatChunk(head, { content: text }, null),
      (result) => [
        chatChunk(head, {}, finishReason(result.finishReason)),
        ...(withUsage ? [usageChunk(head, "chat.completion.chunk", result)] : []),
      ],
    );
    run.detach(); // from now on the body's cancellation tells that the client left
    return eventStream(c, events, reportError, () => run.stop());
  });
}
