/**
 * {@linkcode RequestGate}: how many generation requests run at once and
 * how many may wait for a turn. A request beyond both, one that waited too
 * long, and every request once the service is stopping, is answered 503
 * with `Retry-After`. A streamed response keeps its turn until its body
 * ends or the client leaves.
 * @module
 */
import type { MiddlewareHandler } from "../deps/hono.ts";
import { ApiError } from "./api_error.ts";

/**
 * Limits of a {@linkcode RequestGate}.
 *
 * @example
 * ```ts
 * import type { GateLimits } from "./gate.ts";
 * const limits: GateLimits = { maxInFlight: 8, maxQueued: 32, queueTimeoutMs: 30_000 };
 * ```
 */
export interface GateLimits {
  /** Requests handled at once. */
  maxInFlight: number;
  /** Requests waiting for a turn at most. */
  maxQueued: number;
  /** How long a request may wait for a turn. */
  queueTimeoutMs: number;
}

function unavailable(message: string): ApiError {
  return new ApiError(503, "service_unavailable", message, { headers: { "retry-after": "1" } });
}

/**
 * Turns for requests: `maxInFlight` at once, `maxQueued` waiting in order.
 *
 * @example
 * ```ts
 * import { RequestGate } from "./gate.ts";
 * const gate = new RequestGate({ maxInFlight: 1, maxQueued: 0, queueTimeoutMs: 1000 });
 * const release = await gate.enter();
 * release();
 * ```
 */
export class RequestGate {
  readonly #limits: GateLimits;
  readonly #waiting: Array<PromiseWithResolvers<void>> = [];
  #inFlight = 0;
  #stopped = false;

  /** A gate with these limits. */
  constructor(limits: GateLimits) {
    this.#limits = limits;
  }

  /** Requests holding a turn now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Requests waiting now. */
  get queued(): number {
    return this.#waiting.length;
  }

  /** Refuses every request from now on; those waiting are answered 503. */
  stop(): void {
    this.#stopped = true;
    for (const waiter of this.#waiting.splice(0)) waiter.reject(unavailable("the server is shutting down"));
  }

  /**
   * Waits for a turn and resolves to its release (call it once); a 503
   * {@linkcode ApiError} when there is none to be had.
   */
  async enter(signal?: AbortSignal): Promise<() => void> {
    if (this.#stopped) throw unavailable("the server is shutting down");
    if (this.#inFlight < this.#limits.maxInFlight && this.#waiting.length === 0) {
      this.#inFlight++;
    } else if (this.#waiting.length >= this.#limits.maxQueued) {
      throw unavailable(`the server is busy: ${this.#inFlight} requests running, ${this.#waiting.length} waiting`);
    } else {
      await this.#wait(signal);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      // The turn passes straight to the next in line, so no newcomer can slip in between.
      const next = this.#waiting.shift();
      if (next) next.resolve();
      else this.#inFlight--;
    };
  }

  /** Waits in line until a turn is handed over (or refuses: timeout, client gone, stopping). */
  async #wait(signal?: AbortSignal): Promise<void> {
    const waiter = Promise.withResolvers<void>();
    this.#waiting.push(waiter);
    const leave = (error: ApiError) => {
      const at = this.#waiting.indexOf(waiter);
      if (at < 0) return; // already given a turn
      this.#waiting.splice(at, 1);
      waiter.reject(error);
    };
    const timer = setTimeout(
      () => leave(unavailable(`the server is busy: no turn within ${this.#limits.queueTimeoutMs} ms`)),
      this.#limits.queueTimeoutMs,
    );
    const onAbort = () => leave(new ApiError(499, "client_closed_request", "the client closed the request"));
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await waiter.promise;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Middleware holding a turn for the whole request, a streamed body included.
   *
   * @example
   * ```ts
   * import { Hono } from "../deps/hono.ts";
   * import { RequestGate } from "./gate.ts";
   * const gate = new RequestGate({ maxInFlight: 4, maxQueued: 16, queueTimeoutMs: 10_000 });
   * const app = new Hono().post("/work", gate.middleware(), (c) => c.json({ ok: true }));
   * ```
   */
  middleware(): MiddlewareHandler {
    return async (c, next) => {
      const release = await this.enter(c.req.raw.signal);
      let handedOver = false;
      try {
        await next();
        const body = c.res.body;
        if (body) {
          c.res = new Response(releaseAtEnd(body, release), c.res);
          handedOver = true;
        }
      } finally {
        if (!handedOver) release();
      }
    };
  }
}

/** `body`, calling `release` once when it ends, fails or is cancelled. */
function releaseAtEnd(body: ReadableStream<Uint8Array>, release: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          release();
          controller.close();
        } else {
          controller.enqueue(value);
        }
      } catch (error) {
        release();
        controller.error(error);
      }
    },
    async cancel(reason) {
      release();
      // A client gone mid-stream: the inner body's own cancellation errors have nowhere to go.
      await reader.cancel(reason).catch(() => {});
    },
  });
}
