/**
 * Streamed completions as server-sent events, with Hono's `streamSSE`: one
 * `data: <json>` event per chunk, `data: [DONE]` at the end; an error in the
 * middle becomes one `data: {"error": ...}` event that ends the stream. When
 * the client goes away, `onAbort` stops the generation.
 * @module
 */
import { type Context, streamSSE } from "../deps/hono.ts";
import type { ApiError } from "./api_error.ts";

/**
 * A `text/event-stream` response of the events.
 *
 * @example
 * ```ts
 * import { Hono } from "../deps/hono.ts";
 * import { eventStream } from "./event_stream.ts";
 * import { toApiError } from "./to_api_error.ts";
 * async function* events() {
 *   yield { text: "hi" };
 * }
 * const app = new Hono().get("/", (c) => eventStream(c, events(), toApiError, () => {}));
 * await (await app.request("/")).text(); // 'data: {"text":"hi"}\n\ndata: [DONE]\n\n'
 * ```
 */
export function eventStream(
  c: Context,
  events: AsyncGenerator<unknown, void, undefined>,
  toError: (error: unknown) => ApiError,
  onAbort: () => void,
): Response {
  c.header("x-accel-buffering", "no"); // proxies must not hold events back
  return streamSSE(c, async (stream) => {
    stream.onAbort(onAbort);
    try {
      for await (const event of events) {
        if (stream.aborted) return; // leaving the loop ends the events, and with them the generation
        await stream.writeSSE({ data: JSON.stringify(event) });
      }
      await stream.writeSSE({ data: "[DONE]" });
    } catch (error) {
      if (!stream.aborted) await stream.writeSSE({ data: JSON.stringify(toError(error).body()) });
    }
  });
}
