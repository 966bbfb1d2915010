/**
 * {@linkcode urlSource}: an http(s) URL of a folder as a {@linkcode FileSource}.
 * Files are fetched relative to it, streamed, checked against their
 * `Content-Length`, with progress and the bounded I/O of `http.ts`
 * (timeouts, retries, `Range` resume). Nothing is cached: a failed or
 * wrong-sized read leaves nothing behind.
 * @module
 */
import { FileNotFoundError, UrlError, type UrlErrorReason } from "../errors.ts";
import type { FileSource } from "./file_source.ts";
import { announcedSize, boundedFetch, type NetworkOptions, streamBody, TransportError } from "./http.ts";
import { insideFolder } from "./paths.ts";

/**
 * Options of {@linkcode urlSource}.
 *
 * @example
 * ```ts
 * import type { UrlSourceOptions } from "./url.ts";
 * const options: UrlSourceOptions = { timeoutMs: 10_000, onProgress: (p) => console.log(p.file, p.loaded) };
 * ```
 */
export interface UrlSourceOptions extends NetworkOptions {
  /** The fetch to use (tests, proxies); defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Extra request headers (e.g. `Authorization` for a private bucket). */
  headers?: Record<string, string>;
  /** Called as bytes of each file arrive. */
  onProgress?: (progress: { file: string; loaded: number; total?: number }) => void;
}

/**
 * Whether a string is an http(s) URL.
 *
 * @example
 * ```ts
 * import { isHttpUrl } from "./url.ts";
 * isHttpUrl("https://models.example/llama/"); // true
 * isHttpUrl("org/name"); // false
 * ```
 */
export function isHttpUrl(value: string | URL): boolean {
  return /^https?:\/\//i.test(String(value));
}

/** A URL for messages: no credentials, no query, no fragment. */
function shown(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

function statusReason(status: number): UrlErrorReason {
  return status === 401 ? "unauthorized" : status === 403 ? "forbidden" : "server";
}

/**
 * Opens the folder at an http(s) URL as a {@linkcode FileSource}: `read`
 * fetches `<url>/<file>`. A missing file (404/410) is a
 * {@linkcode FileNotFoundError}; every other failure is a
 * {@linkcode UrlError} with reason `timeout`, `network`, `truncated`
 * (size differs from `Content-Length`), `unauthorized`, `forbidden`,
 * `server` or `invalid`.
 *
 * @example
 * ```ts
 * import { urlSource } from "./url.ts";
 * const model = urlSource("https://models.example/llama-tiny/", { timeoutMs: 10_000 });
 * const config = JSON.parse(new TextDecoder().decode(await model.read("config.json")));
 * ```
 */
export function urlSource(url: string | URL, options: UrlSourceOptions = {}): FileSource {
  let base: URL;
  try {
    base = new URL(String(url));
  } catch (cause) {
    throw new UrlError("not a valid URL", { url: String(url).slice(0, 200), reason: "invalid", cause });
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") {
    throw new UrlError("only http: and https: URLs are fetched", { url: shown(base), reason: "invalid" });
  }
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  const location = shown(base);
  const headers = { "Accept-Encoding": "identity", ...options.headers };
  const rawFetch = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  const get = boundedFetch(rawFetch as typeof fetch, options);

  const fileUrl = (file: string): URL => {
    const name = insideFolder(file);
    if (name === undefined) {
      throw new UrlError("the file name leaves the folder", { url: location, file, reason: "invalid" });
    }
    return new URL(name.split("/").map(encodeURIComponent).join("/"), base);
  };
  const failure = (error: unknown, target: URL, file: string): Error => {
    if (error instanceof UrlError || error instanceof FileNotFoundError) return error;
    if (error instanceof TransportError) {
      return new UrlError(`${error.message}; nothing was kept`, {
        url: shown(target),
        file,
        reason: error.kind,
        cause: error,
      });
    }
    return new UrlError(`request failed (${error instanceof Error ? error.message : String(error)})`, {
      url: shown(target),
      file,
      reason: "network",
      cause: error,
    });
  };
  const statusError = (status: number, target: URL, file: string): Error =>
    status === 404 || status === 410
      ? new FileNotFoundError(`no such file at ${location}`, { file })
      : new UrlError(`HTTP status ${status} from ${shown(target)}`, {
        url: shown(target),
        file,
        status,
        reason: statusReason(status),
      });

  return {
    location,
    async read(file) {
      const target = fileUrl(file);
      let chunks: Uint8Array[] = [];
      let loaded = 0;
      let total: number | undefined;
      try {
        const outcome = await streamBody(get, target.href, headers, {
          write: (chunk) => {
            chunks.push(chunk);
          },
          restart: () => {
            chunks = [];
          },
        }, {
          retries: options.retries,
          onBytes: (bytes, size) => {
            loaded = bytes;
            total = size;
            if (size !== undefined && bytes > size) {
              throw new UrlError(`the server sent more than its Content-Length of ${size} bytes; nothing was kept`, {
                url: shown(target),
                file,
                reason: "truncated",
              });
            }
            options.onProgress?.({ file, loaded: bytes, total: size });
          },
        });
        if (!outcome.ok) {
          await outcome.response.body?.cancel().catch(() => {});
          throw statusError(outcome.response.status, target, file);
        }
        total = announcedSize(outcome.response);
        loaded = outcome.loaded;
      } catch (error) {
        throw failure(error, target, file);
      }
      if (total !== undefined && loaded !== total) {
        throw new UrlError(`got ${loaded} of the ${total} bytes of its Content-Length; nothing was kept`, {
          url: shown(target),
          file,
          reason: "truncated",
        });
      }
      const out = new Uint8Array(loaded);
      let at = 0;
      for (const chunk of chunks) {
        out.set(chunk, at);
        at += chunk.length;
      }
      return out;
    },
    async exists(file) {
      const target = fileUrl(file);
      try {
        let response = await get(target.href, { method: "HEAD", headers });
        await response.body?.cancel().catch(() => {});
        if (response.status === 405 || response.status === 501) {
          // No HEAD here: ask for one byte instead.
          response = await get(target.href, { headers: { ...headers, Range: "bytes=0-0" } });
          await response.body?.cancel().catch(() => {});
          if (response.status === 416) return true; // an empty file
        }
        if (response.ok) return true;
        if (response.status === 404 || response.status === 410) return false;
        throw statusError(response.status, target, file);
      } catch (error) {
        throw failure(error, target, file);
      }
    },
  };
}
