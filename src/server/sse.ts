/**
 * Server-sent events for streamed completions: one `data: <json>` event per
 * chunk, `data: [DONE]` at the end. When the client goes away the stream is
 * cancelled and `onCancel` stops the generation.
 * @module
 */
import type { HttpError } from "./http_error.ts";

/**
 * A `text/event-stream` response of the events; an error in the middle
 * becomes an `{ "error": ... }` event, then the stream ends.
 *
 * @example
 * ```ts
 * import { sseResponse } from "./sse.ts";
 * async function* events() {
 *   yield { text: "hi" };
 * }
 * const response = sseResponse(events(), (e) => { throw e; }, () => {});
 * await response.text(); // 'data: {"text":"hi"}\n\ndata: [DONE]\n\n'
 * ```
 */
export function sseResponse(
  events: AsyncGenerator<unknown, void, undefined>,
  toError: (error: unknown) => HttpError,
  onCancel: (reason: unknown) => void,
): Response {
  const encoder = new TextEncoder();
  const event = (data: string) => encoder.encode(`data: ${data}\n\n`);
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let data: string;
      let last = false;
      try {
        const next = await events.next();
        last = next.done === true;
        data = last ? "[DONE]" : JSON.stringify(next.value);
      } catch (error) {
        const http = toError(error);
        data = JSON.stringify({ error: { message: http.message, type: http.type, param: null, code: null } });
        last = true;
      }
      if (cancelled) return; // the client is gone
      controller.enqueue(event(data));
      if (last) controller.close();
    },
    cancel(reason) {
      cancelled = true;
      onCancel(reason);
      void events.return(undefined).catch(() => {});
    },
  });
  return new Response(body, {
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
    },
  });
}
