/**
 * One generation for one request: started (so that bad input, an unknown
 * model or a busy server fail before any response is sent), tied to the
 * request's signal (a client that disconnects stops it) and to the
 * service's stop signal (a shutdown cancels it), then either collected or
 * turned into stream events.
 * @module
 */
import type { GenerateOptions, GenerationResult, Prompt } from "../generate/mod.ts";
import type { AdapterPool } from "../serving/pool.ts";
import { ApiError } from "./api_error.ts";

/**
 * A generation whose first step has run.
 *
 * @example
 * ```ts
 * import type { StartedGeneration } from "./run_generation.ts";
 * declare const run: StartedGeneration;
 * run.stop(); // aborts it
 * ```
 */
export interface StartedGeneration {
  /** The first piece, or the result when there was none. */
  readonly first: IteratorResult<string, GenerationResult>;
  /** The rest of the pieces. */
  readonly pieces: AsyncGenerator<string, GenerationResult, undefined>;
  /** Aborts the generation. */
  stop(reason?: unknown): void;
  /**
   * Stops watching the request's signal. A streamed response calls it when
   * it hands its body over: from then on the body's cancellation tells that
   * the client went away (`Deno.serve`'s own `request.signal`, where the app
   * is served without `listen`, aborts once a response is returned, even
   * while its body is still streaming).
   */
  detach(): void;
  /** Stops watching every signal (the generation has ended). */
  release(): void;
}

/**
 * Starts generating with a model of the pool and runs up to the first piece.
 *
 * @example
 * ```ts
 * import { startGeneration } from "./run_generation.ts";
 * import type { AdapterPool } from "../serving/pool.ts";
import { ApiError } from "./api_error.ts";
 * declare const pool: AdapterPool;
 * declare const request: Request;
 * const run = await startGeneration(pool, "base", "The ", { maxNewTokens: 8 }, request.signal);
 * ```
 */
export async function startGeneration(
  pool: AdapterPool,
  model: string,
  prompt: Prompt,
  options: GenerateOptions,
  requestSignal: AbortSignal,
  stopSignal?: AbortSignal,
): Promise<StartedGeneration> {
  const controller = new AbortController();
  const stop = (reason?: unknown) => controller.abort(reason);
  const watch = (signal: AbortSignal | undefined, reason: () => unknown) => {
    if (!signal) return () => {};
    const onAbort = () => stop(reason());
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    return () => signal.removeEventListener("abort", onAbort);
  };
  const detach = watch(requestSignal, () => requestSignal.reason);
  // Listeners on the long-lived stop signal are removed when the generation ends, or they would pile up.
  const unwatchStop = watch(
    stopSignal,
    () => new ApiError(503, "service_unavailable", "the server is shutting down", { headers: { "retry-after": "1" } }),
  );
  const release = () => {
    detach();
    unwatchStop();
  };
  const pieces = pool.stream(model, prompt, { ...options, signal: controller.signal });
  try {
    return { first: await pieces.next(), pieces, stop, detach, release };
  } catch (error) {
    release();
    throw error;
  }
}

/**
 * Runs a started generation to its end.
 *
 * @example
 * ```ts
 * import { collect, type StartedGeneration } from "./run_generation.ts";
 * declare const run: StartedGeneration;
 * const { text, finishReason } = await collect(run);
 * ```
 */
export async function collect(run: StartedGeneration): Promise<GenerationResult> {
  try {
    let next = run.first;
    while (!next.done) next = await run.pieces.next();
    return next.value;
  } finally {
    run.release();
  }
}

/**
 * Events of a streamed response: `start`, one per piece, then `end(result)`.
 * Ending the events early (client gone) ends the generation too. Call
 * `run.detach()` before handing the events to a response.
 *
 * @example
 * ```ts
 * import { streamEvents, type StartedGeneration } from "./run_generation.ts";
 * declare const run: StartedGeneration;
 * const events = streamEvents<{ text?: string; done?: string }>(
 *   run,
 *   [],
 *   (text) => ({ text }),
 *   (result) => [{ done: result.finishReason }],
 * );
 * ```
 */
export async function* streamEvents<T>(
  run: StartedGeneration,
  start: readonly T[],
  piece: (text: string) => T,
  end: (result: GenerationResult) => readonly T[],
): AsyncGenerator<T, void, undefined> {
  let next = run.first;
  try {
    yield* start;
    while (!next.done) {
      yield piece(next.value);
      next = await run.pieces.next();
    }
    yield* end(next.value);
  } finally {
    run.release();
    if (!next.done) {
      run.stop();
      await run.pieces.return(undefined as unknown as GenerationResult).catch(() => {});
    }
  }
}
