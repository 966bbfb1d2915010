/**
 * A fetch wrapper that remembers what the last failing response said
 * (status and `X-Error-Code`), which `@huggingface/hub` drops when it turns a
 * response into an error, and that fully reads the tiny body of a
 * `Range: bytes=0-0` probe so no connection is left half-read.
 * @module
 */

/**
 * What the server said on the last failing response, if any.
 *
 * @example
 * ```ts
 * import type { SeenResponse } from "./observe.ts";
 * const seen: SeenResponse = { status: 403, errorCode: "GatedRepo" };
 * ```
 */
export interface SeenResponse {
  status?: number;
  /** The Hub's `X-Error-Code` header (`RepoNotFound`, `GatedRepo`, ...). */
  errorCode?: string;
}

/**
 * A fetch to hand to `@huggingface/hub`, and what it saw.
 *
 * @example
 * ```ts
 * import { observedFetch, type ObservedFetch } from "./observe.ts";
 * const probe: ObservedFetch = observedFetch(fetch);
 * ```
 */
export interface ObservedFetch {
  fetch: typeof fetch;
  seen: SeenResponse;
}

/** Whether a request asks for the one-byte range probe. */
function isRangeProbe(init: RequestInit | undefined): boolean {
  return new Headers(init?.headers).get("Range") === "bytes=0-0";
}

/**
 * Wraps a fetch for one operation (never shared between operations).
 *
 * @example
 * ```ts
 * import { observedFetch } from "./observe.ts";
 * const probe = observedFetch(fetch);
 * await probe.fetch("https://huggingface.co/api/models/gpt2").catch(() => {});
 * console.log(probe.seen.status);
 * ```
 */
export function observedFetch(base: typeof fetch): ObservedFetch {
  const seen: SeenResponse = {};
  const wrapped = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const response = await base(input, init);
    if (!response.ok) {
      seen.status = response.status;
      seen.errorCode = response.headers.get("X-Error-Code") ?? undefined;
      return response;
    }
    if (!isRangeProbe(init) || response.body === null) return response;
    const body = await response.arrayBuffer();
    const copy = new Response(body, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
    // Keep the final URL (after redirects), which fileDownloadInfo reads.
    Object.defineProperty(copy, "url", { value: response.url });
    return copy;
  };
  return { fetch: wrapped as typeof fetch, seen };
}
