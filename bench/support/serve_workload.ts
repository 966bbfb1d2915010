/**
 * A bounded load generator for the serving bench: a fixed number of short
 * non-streaming completions sent by a fixed number of concurrent workers to
 * a service on 127.0.0.1, request `i` naming adapter `i % adapters.length`.
 * A completion answered 404 (its adapter was evicted) loads the adapter over
 * HTTP with the admin token and retries; a 503 (pool full of adapters in
 * use, or too many generations) backs off briefly and retries. Attempts per
 * request and the whole run's time are capped, and only loopback URLs are
 * accepted.
 * @module
 */

/** One adapter a workload names: the served name and its id under a local root. */
export interface WorkloadAdapter {
  readonly name: string;
  readonly id: string;
}

/** The shape of a workload. */
export interface WorkloadOptions {
  /** The service, `http://127.0.0.1:<port>` (anything else is refused). */
  readonly url: string;
  /** The admin bearer token, to load adapters. */
  readonly adminToken: string;
  /** Requests to send. */
  readonly requests: number;
  /** Requests in flight at once. */
  readonly concurrency: number;
  /** `max_tokens` of every completion. */
  readonly maxTokens: number;
  /** Prompts, request `i` sends `prompts[i % prompts.length]`. */
  readonly prompts: readonly string[];
  /** Adapters, request `i` names `adapters[i % adapters.length]`. */
  readonly adapters: readonly WorkloadAdapter[];
  /** No request starts after this many milliseconds, and those in flight are aborted. */
  readonly deadlineMs: number;
  /** Completion attempts per request before it counts as failed. */
  readonly maxAttempts: number;
}

/** What a workload measured. */
export interface WorkloadResult {
  /** Requests answered 200 (possibly after retries). */
  completed: number;
  /** Requests that failed (attempts used up, unexpected status, deadline). */
  failed: number;
  /** The first failure's message, if any. */
  firstError?: string;
  /** Wall-clock seconds from the first request to the last answer. */
  seconds: number;
  /** Client-side latency of each completed request, retries included, in ms. */
  latenciesMs: number[];
  /** Generated tokens, summed from the replies' `usage`. */
  completionTokens: number;
  /** Adapter loads that created an adapter (201 from `POST /v1/adapters`). */
  loads: number;
  /** Completions answered 404 (adapter not held). */
  notFound: number;
  /** Answers 503 (completions or loads). */
  busy: number;
}

/** A value of a sorted array at quantile `q` (nearest rank). */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs a workload and measures it.
 *
 * @example
 * ```ts
 * import { runWorkload } from "./serve_workload.ts";
 * const result = await runWorkload({
 *   url: "http://127.0.0.1:8000", adminToken: "change-me-please", requests: 20, concurrency: 4,
 *   maxTokens: 8, prompts: ["def "], adapters: [{ name: "py", id: "python" }], deadlineMs: 30_000, maxAttempts: 20,
 * });
 * console.log(result.completed / result.seconds, "requests/s");
 * ```
 */
export async function runWorkload(options: WorkloadOptions): Promise<WorkloadResult> {
  const base = new URL(options.url);
  if (base.hostname !== "127.0.0.1" || base.protocol !== "http:") {
    throw new Error(`the bench only sends traffic to http://127.0.0.1, not ${options.url}`);
  }
  const result: WorkloadResult = {
    completed: 0,
    failed: 0,
    seconds: 0,
    latenciesMs: [],
    completionTokens: 0,
    loads: 0,
    notFound: 0,
    busy: 0,
  };
  const signal = AbortSignal.timeout(options.deadlineMs);
  const post = (path: string, body: unknown, token?: string) =>
    fetch(new URL(path, base), {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
      signal,
    });

  /** Loads an adapter after a 404; false when the pool was full (503) and the caller should back off. */
  const load = async (adapter: WorkloadAdapter): Promise<boolean> => {
    const response = await post("/v1/adapters", { id: adapter.id, name: adapter.name }, options.adminToken);
    const text = await response.text();
    if (response.status === 201) result.loads++;
    else if (response.status === 503) return (result.busy++, false);
    else if (response.status !== 200) throw new Error(`loading ${adapter.name}: ${response.status} ${text}`);
    return true;
  };

  /** One request, retried after 404 (load) and 503 (back off); returns the tokens generated. */
  const complete = async (i: number): Promise<number> => {
    const adapter = options.adapters[i % options.adapters.length];
    const body = {
      model: adapter.name,
      prompt: options.prompts[i % options.prompts.length],
      max_tokens: options.maxTokens,
      temperature: 0,
    };
    for (let attempt = 1; attempt <= options.maxAttempts; attempt++) {
      const response = await post("/v1/completions", body);
      const text = await response.text();
      if (response.status === 200) return JSON.parse(text).usage?.completion_tokens ?? 0;
      if (response.status === 404) {
        result.notFound++;
        if (await load(adapter)) continue;
      } else if (response.status === 503) {
        result.busy++;
      } else {
        throw new Error(`completion with ${adapter.name}: ${response.status} ${text}`);
      }
      await sleep(Math.min(50, 2 ** attempt));
    }
    throw new Error(`completion with ${adapter.name}: no answer within ${options.maxAttempts} attempts`);
  };

  let next = 0;
  const worker = async () => {
    while (next < options.requests && !signal.aborted) {
      const i = next++;
      const start = performance.now();
      try {
        const tokens = await complete(i); // awaited before adding: `+= await` would lose concurrent updates
        result.completionTokens += tokens;
        result.latenciesMs.push(performance.now() - start);
        result.completed++;
      } catch (error) {
        result.failed++;
        result.firstError ??= signal.aborted ? `deadline of ${options.deadlineMs} ms reached` : String(error);
      }
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  result.seconds = (performance.now() - start) / 1000;
  result.failed += options.requests - result.completed - result.failed; // never started: deadline
  result.latenciesMs.sort((a, b) => a - b);
  return result;
}
