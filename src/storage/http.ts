/**
 * Bounded HTTP for every download (Hub and http(s) URL locations): a request
 * fails when no response arrives within `timeoutMs`, or when its body moves
 * less than 64 KiB in any `timeoutMs` window (a stalled or trickling server
 * cannot keep it alive); 408/429/5xx answers and network errors are retried
 * with exponential backoff (1 s doubling to 8 s, `Retry-After` honoured), as
 * Python `huggingface_hub`'s `http_backoff` does, and a body cut short is
 * resumed with `Range` ({@linkcode streamBody}).
 * @module
 */

import { unrefTimer } from "../runtime/timers.ts";

/**
 * The default `timeoutMs`: 30 s.
 *
 * @example
 * ```ts
 * import { DEFAULT_TIMEOUT_MS } from "./http.ts";
 * console.log(DEFAULT_TIMEOUT_MS); // 30000
 * ```
 */
export const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * The least a body must move in every `timeoutMs` window: 64 KiB.
 *
 * @example
 * ```ts
 * import { MIN_BYTES_PER_WINDOW } from "./http.ts";
 * console.log(MIN_BYTES_PER_WINDOW); // 65536
 * ```
 */
export const MIN_BYTES_PER_WINDOW = 64 * 1024;

/**
 * The default number of retries (Python `huggingface_hub`'s `max_retries`).
 *
 * @example
 * ```ts
 * import { DEFAULT_RETRIES } from "./http.ts";
 * console.log(DEFAULT_RETRIES); // 5
 * ```
 */
export const DEFAULT_RETRIES = 5;

/** Statuses worth another try: timeout, rate limit, transient server errors. */
const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const FIRST_WAIT_MS = 1000;
const MAX_WAIT_MS = 8000;
/** A `Retry-After` longer than this is not waited for; the status is returned. */
const MAX_RETRY_AFTER_MS = 60_000;

/**
 * How patient network reads are.
 *
 * @example
 * ```ts
 * import type { NetworkOptions } from "./http.ts";
 * const options: NetworkOptions = { timeoutMs: 10_000, retries: 2 };
 * ```
 */
export interface NetworkOptions {
  /**
   * Milliseconds to wait for a response, and the window in which a body
   * must move at least 64 KiB (default 30 000).
   */
  timeoutMs?: number;
  /** Retries on 408/429/5xx, network errors and timeouts (default 5). */
  retries?: number;
}

/**
 * A request that failed below HTTP: `timeout` (no response, or a stalled or
 * trickling body) or `network` (refused, reset, dropped). Callers turn it
 * into their typed error (`HubError`, `UrlError`).
 *
 * @example
 * ```ts
 * import { TransportError } from "./http.ts";
 * const e = new TransportError("timeout", "no response within 300 ms");
 * console.log(e.kind); // "timeout"
 * ```
 */
export class TransportError extends Error {
  constructor(readonly kind: "timeout" | "network", message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TransportError";
  }
}

/**
 * The {@linkcode TransportError} an error thrown by fetch or a body read
 * stands for (a `TypeError` from fetch is a network failure).
 *
 * @example
 * ```ts
 * import { asTransportError } from "./http.ts";
 * asTransportError(new TypeError("connection reset")).kind; // "network"
 * ```
 */
export function asTransportError(error: unknown): TransportError {
  if (error instanceof TransportError) return error;
  const cause = (error as { cause?: unknown })?.cause;
  if (cause instanceof TransportError) return cause;
  const message = error instanceof Error ? error.message : String(error);
  const inner = cause instanceof Error && cause.message && cause.message !== message ? `: ${cause.message}` : "";
  return new TransportError("network", `${message}${inner}`, { cause: error });
}

/** Milliseconds a `Retry-After` header asks for, if it is readable. */
function retryAfterMs(headers: Headers): number | undefined {
  const value = headers.get("Retry-After");
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function sleep(ms: number, signal?: AbortSignal | null): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A body that errors with a `timeout` {@linkcode TransportError} (and aborts
 * the request) when it moves less than 64 KiB in a `timeoutMs` window.
 */
function watchedBody(body: ReadableStream<Uint8Array>, abort: AbortController, timeoutMs: number) {
  const reader = body.getReader();
  let moved = 0;
  let timer: ReturnType<typeof setInterval> | undefined;
  const stop = () => clearInterval(timer);
  return new ReadableStream<Uint8Array>({
    start(stream) {
      timer = setInterval(() => {
        if (moved < MIN_BYTES_PER_WINDOW) {
          stop();
          const error = new TransportError(
            "timeout",
            `the body moved ${moved} bytes in ${timeoutMs} ms (less than 64 KiB): the server stalled or trickles`,
          );
          abort.abort(error);
          reader.cancel(error).catch(() => {});
          stream.error(error);
        }
        moved = 0;
      }, timeoutMs);
      unrefTimer(timer);
    },
    async pull(stream) {
      try {
        const step = await reader.read();
        if (step.done) {
          stop();
          stream.close();
          return;
        }
        moved += step.value.length;
        stream.enqueue(step.value);
      } catch (error) {
        stop();
        stream.error(abort.signal.reason instanceof TransportError ? abort.signal.reason : asTransportError(error));
      }
    },
    cancel(reason) {
      stop();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** One request with a response deadline and a watched body. */
async function fetchOnce(
  base: typeof fetch,
  input: RequestInfo | URL,
  init: RequestInit | undefined,
  timeoutMs: number,
): Promise<Response> {
  const abort = new AbortController();
  const outer = init?.signal;
  const onOuterAbort = () => abort.abort(outer?.reason);
  if (outer?.aborted) abort.abort(outer.reason);
  outer?.addEventListener("abort", onOuterAbort, { once: true });
  const timer = setTimeout(
    () => abort.abort(new TransportError("timeout", `no response within ${timeoutMs} ms`)),
    timeoutMs,
  );
  let response: Response;
  try {
    response = await base(input, { ...init, signal: abort.signal });
  } catch (error) {
    const reason = abort.signal.reason;
    throw reason instanceof TransportError ? reason : outer?.aborted ? error : asTransportError(error);
  } finally {
    clearTimeout(timer);
  }
  if (response.body === null) return response;
  const watched = new Response(watchedBody(response.body, abort, timeoutMs), {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
  // Keep the final URL (after redirects), which callers read.
  Object.defineProperty(watched, "url", { value: response.url });
  return watched;
}

/**
 * Wraps a fetch with the deadline, the body watch and the retries. A
 * retried status is returned as is once the retries are spent. With
 * `retryNetwork: false` network errors and timeouts fail at once (only
 * statuses are retried): Python `huggingface_hub` does that for metadata
 * requests, so that a Hub that cannot be reached falls back to the cache
 * without waiting.
 *
 * @example
 * ```ts
 * import { boundedFetch } from "./http.ts";
 * const get = boundedFetch(fetch, { timeoutMs: 5000, retries: 2 });
 * const response = await get("https://huggingface.co/api/models/gpt2");
 * ```
 */
export function boundedFetch(
  base: typeof fetch,
  options: NetworkOptions = {},
  { retryNetwork = true }: { retryNetwork?: boolean } = {},
): typeof fetch {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const retries = options.retries ?? DEFAULT_RETRIES;
  const bounded = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    let wait = FIRST_WAIT_MS;
    for (let attempt = 0;; attempt++) {
      const last = attempt >= retries;
      let response: Response;
      try {
        response = await fetchOnce(base, input, init, timeoutMs);
      } catch (error) {
        if (last || !retryNetwork || !(error instanceof TransportError)) throw error;
        await sleep(wait, init?.signal);
        wait = Math.min(MAX_WAIT_MS, wait * 2);
        continue;
      }
      if (last || !RETRY_STATUS.has(response.status)) return response;
      const after = retryAfterMs(response.headers);
      if (after !== undefined && after > MAX_RETRY_AFTER_MS) return response;
      await response.body?.cancel().catch(() => {});
      await sleep(after ?? wait, init?.signal);
      wait = Math.min(MAX_WAIT_MS, wait * 2);
    }
  };
  return bounded as typeof fetch;
}

/**
 * The full size of a file a response carries (or a part of): the total of
 * `Content-Range`, else `Content-Length` when the body is not encoded;
 * `undefined` when the server does not say.
 *
 * @example
 * ```ts
 * import { announcedSize } from "./http.ts";
 * announcedSize(new Response("abc", { headers: { "Content-Length": "3" } })); // 3
 * ```
 */
export function announcedSize(response: Response): number | undefined {
  const range = response.headers.get("Content-Range")?.match(/\/(\d+)\s*$/);
  if (range) return Number(range[1]);
  const encoding = response.headers.get("Content-Encoding");
  if (encoding && encoding.toLowerCase() !== "identity") return undefined;
  const length = response.headers.get("Content-Length");
  return length !== null && /^\d+$/.test(length.trim()) ? Number(length) : undefined;
}

/**
 * What {@linkcode streamBody} needs: where to send bytes and how to start over.
 *
 * @example
 * ```ts
 * import type { BodySink } from "./http.ts";
 * const parts: Uint8Array[] = [];
 * const sink: BodySink = { write: (c) => void parts.push(c), restart: () => void (parts.length = 0) };
 * ```
 */
export interface BodySink {
  /** Receives the next chunk. */
  write(chunk: Uint8Array): Promise<void> | void;
  /** Drops everything written (the server ignored a `Range`). */
  restart(): Promise<void> | void;
}

/**
 * The outcome of a request made by {@linkcode streamBody}: the body went to
 * the sink (`ok`), or the server answered with a failing status.
 *
 * @example
 * ```ts
 * import type { StreamOutcome } from "./http.ts";
 * const done: StreamOutcome = { ok: true, loaded: 1024, response: new Response(null) };
 * ```
 */
export type StreamOutcome =
  | { ok: true; loaded: number; response: Response }
  | { ok: false; response: Response };

/**
 * Streams a GET's body into `sink`. When the body fails mid-way (dropped,
 * stalled), the request is made again from where it stopped with
 * `Range: bytes=<loaded>-` (up to `retries` times in a row that moved less
 * than 64 KiB each); a server that answers the range with a full 200 starts over.
 * `fetchFn` should be a {@linkcode boundedFetch}. A body that still fails
 * throws a {@linkcode TransportError}; a failing status is returned.
 *
 * @example
 * ```ts
 * import { boundedFetch, streamBody } from "./http.ts";
 * const parts: Uint8Array[] = [];
 * const outcome = await streamBody(boundedFetch(fetch), "https://example.com/model.onnx", {}, {
 *   write: (c) => void parts.push(c),
 *   restart: () => void (parts.length = 0),
 * });
 * ```
 */
export async function streamBody(
  fetchFn: typeof fetch,
  url: string,
  headers: Record<string, string>,
  sink: BodySink,
  options: { retries?: number; onBytes?: (loaded: number, total: number | undefined) => void } = {},
): Promise<StreamOutcome> {
  const retries = options.retries ?? DEFAULT_RETRIES;
  let loaded = 0;
  let left = retries;
  let wait = FIRST_WAIT_MS;
  let first: Response | undefined;
  for (;;) {
    const ranged = loaded > 0 ? { ...headers, Range: `bytes=${loaded}-` } : headers;
    const response = await fetchFn(url, { headers: ranged });
    if (loaded > 0 && response.status === 200) {
      // The server ignored the range: take the whole body again.
      await sink.restart();
      loaded = 0;
    } else if (loaded > 0 && response.status !== 206) {
      await response.body?.cancel().catch(() => {});
      return { ok: false, response };
    }
    if (!response.ok) return { ok: false, response };
    first ??= response;
    if (loaded > 0 && !(response.headers.get("Content-Range") ?? "").startsWith(`bytes ${loaded}-`)) {
      await response.body?.cancel().catch(() => {});
      throw new TransportError("network", `the server answered a resumed download with another range`);
    }
    if (response.body === null) return { ok: true, loaded, response: first };
    const reader = response.body.getReader();
    const startedAt = loaded;
    for (;;) {
      let step: ReadableStreamReadResult<Uint8Array>;
      try {
        step = await reader.read();
      } catch (error) {
        const failure = asTransportError(error);
        if (left <= 0) throw failure;
        left--;
        await reader.cancel().catch(() => {});
        await sleep(wait);
        wait = Math.min(MAX_WAIT_MS, wait * 2);
        break;
      }
      if (step.done) return { ok: true, loaded, response: first };
      loaded += step.value.length;
      if (loaded - startedAt >= MIN_BYTES_PER_WINDOW) {
        // Real progress: the retry budget starts again, as in Python (a trickle never gets this far).
        left = retries;
        wait = FIRST_WAIT_MS;
      }
      try {
        await sink.write(step.value);
      } catch (error) {
        await reader.cancel().catch(() => {});
        throw error;
      }
      options.onBytes?.(loaded, announcedSize(first));
    }
  }
}
