/**
 * One file's trip from the Hub into a {@linkcode HubCache}: ask the server
 * for its size and ETag (`@huggingface/hub`'s `fileDownloadInfo`), stream
 * the body into a temp blob (resuming with `Range` when the connection
 * drops or stalls), check its length and its SHA-256 or git blob id against
 * the ETag, then commit.
 * @module
 */
import { hub } from "../deps/hub.ts";
import { HubError } from "../errors.ts";
import { streamBody, TransportError } from "../storage/http.ts";
import type { BlobWriter, HubCache } from "./cache.ts";
import { type FailureContext, hubFailure } from "./classify.ts";
import { observedFetch } from "./observe.ts";
import { etagCheck, matchesEtag } from "./verify.ts";

/**
 * Size, ETag and URL of a file at a commit, as the server reports them.
 *
 * @example
 * ```ts
 * import type { FileInfo } from "./download.ts";
 * const info: FileInfo = { size: 774, etag: '"9b6b..."', url: "https://huggingface.co/org/a/resolve/main/adapter_config.json" };
 * ```
 */
export type FileInfo = hub.FileDownloadInfoOutput;

/**
 * Progress of one file's download.
 *
 * @example
 * ```ts
 * import type { FileProgress } from "./download.ts";
 * const report = (p: FileProgress) => console.log(`${p.file}: ${p.loaded}/${p.total ?? "?"}`);
 * ```
 */
export interface FileProgress {
  /** Path in the repo. */
  file: string;
  /** Bytes received so far. */
  loaded: number;
  /** Size announced by the server. */
  total?: number;
}

/**
 * What a request needs to know; `token` is never put in a message.
 *
 * @example
 * ```ts
 * import type { RequestContext } from "./download.ts";
 * const ctx: RequestContext = { repo: "org/a", revision: "main", endpoint: "https://huggingface.co", fetch };
 * ```
 */
export interface RequestContext {
  repo: string;
  /** The revision the user asked for (for messages). */
  revision: string;
  endpoint: string;
  token?: string;
  /** The fetch for metadata requests (a `boundedFetch` that fails fast on network errors). */
  fetch: typeof fetch;
  /** The fetch for downloads (a `boundedFetch` that retries network errors too); default `fetch`. */
  downloadFetch?: typeof fetch;
  /** Retries of a download whose body fails mid-way (default 5). */
  retries?: number;
}

/** The context a failure is classified with. */
function failure(ctx: RequestContext, file: string, seen: FailureContext["seen"]): FailureContext {
  return {
    repo: ctx.repo,
    revision: ctx.revision,
    file,
    endpoint: ctx.endpoint,
    withToken: ctx.token !== undefined,
    stage: "file",
    seen,
  };
}

/**
 * Normalizes an ETag into a blob name as Python does (no `W/`, no quotes),
 * rejecting anything that is not a safe file name.
 *
 * @example
 * ```ts
 * import { blobName } from "./download.ts";
 * blobName('W/"abc123"'); // "abc123"
 * ```
 */
export function blobName(etag: string): string | undefined {
  const name = etag.replace(/^W\//, "").replace(/^"|"$/g, "");
  return /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(name) ? name : undefined;
}

/**
 * Asks the server for a file's size and ETag at a commit; `null` when the
 * file does not exist there.
 *
 * @example
 * ```ts
 * import { fileInfo } from "./download.ts";
 * const info = await fileInfo(
 *   { repo: "org/a", revision: "main", endpoint: "https://huggingface.co", fetch },
 *   "adapter_config.json", "main",
 * );
 * ```
 */
export async function fileInfo(ctx: RequestContext, path: string, commit: string): Promise<FileInfo | null> {
  const probe = observedFetch(ctx.fetch);
  try {
    return await hub.fileDownloadInfo({
      repo: { type: "model", name: ctx.repo },
      path,
      revision: commit,
      hubUrl: ctx.endpoint,
      accessToken: ctx.token,
      fetch: probe.fetch,
    });
  } catch (error) {
    throw hubFailure(error, failure(ctx, path, probe.seen));
  }
}

/** The server's text of a failing response, short (for the message). */
async function serverText(response: Response): Promise<string> {
  try {
    const text = (await response.text()).slice(0, 300);
    try {
      const error = (JSON.parse(text) as { error?: unknown }).error;
      return typeof error === "string" ? error : text;
    } catch {
      return text;
    }
  } catch {
    return "";
  }
}

/**
 * Downloads a file into the cache as blob `etag` and returns its bytes. A
 * body that drops or stalls is resumed with `Range` (`ctx.retries` times in
 * a row without progress). On any failure (status, network, timeout, body
 * shorter or longer than announced, content that differs from the ETag)
 * the temp blob is removed and a {@linkcode HubError} is thrown; nothing
 * partial is ever visible in the cache.
 *
 * @example
 * ```ts
 * import { downloadBlob, fileInfo } from "./download.ts";
 * import { memoryHubCache } from "./cache.ts";
 * const ctx = { repo: "org/a", revision: "main", endpoint: "https://huggingface.co", fetch };
 * const info = await fileInfo(ctx, "adapter_config.json", "main");
 * if (info) await downloadBlob(ctx, memoryHubCache(), "adapter_config.json", info, "etag");
 * ```
 */
export async function downloadBlob(
  ctx: RequestContext,
  cache: HubCache,
  path: string,
  info: FileInfo,
  etag: string,
  onProgress?: (progress: FileProgress) => void,
): Promise<Uint8Array> {
  return (await transfer(ctx, cache, path, info, etag, onProgress, true))!;
}

/**
 * {@linkcode downloadBlob} for a file to be read from the cache afterwards
 * (range by range): the body is checked against the ETag chunk by chunk as
 * it is stored, so the file is never held whole (where this runtime cannot
 * hash incrementally it is, for the check, and then dropped).
 *
 * @example
 * ```ts
 * import { downloadBlobToCache, fileInfo } from "./download.ts";
 * import { diskHubCache } from "./disk_cache.ts";
 * const ctx = { repo: "org/a", revision: "main", endpoint: "https://huggingface.co", fetch };
 * const info = await fileInfo(ctx, "onnx/model.onnx", "main");
 * if (info) await downloadBlobToCache(ctx, diskHubCache("/tmp/hf-cache"), "onnx/model.onnx", info, "etag");
 * ```
 */
export async function downloadBlobToCache(
  ctx: RequestContext,
  cache: HubCache,
  path: string,
  info: FileInfo,
  etag: string,
  onProgress?: (progress: FileProgress) => void,
): Promise<void> {
  await transfer(ctx, cache, path, info, etag, onProgress, false);
}

/** The download itself; the bytes are kept (and returned) only with `keep` or where they must be, to check them. */
async function transfer(
  ctx: RequestContext,
  cache: HubCache,
  path: string,
  info: FileInfo,
  etag: string,
  onProgress: ((progress: FileProgress) => void) | undefined,
  keep: boolean,
): Promise<Uint8Array | undefined> {
  const where = failure(ctx, path, {});
  const error = (message: string, reason: "truncated" | "timeout" | "network", cause?: unknown) =>
    new HubError(message, { repo: ctx.repo, revision: ctx.revision, file: path, reason, cause });
  // A cache that cannot store (a full disk, a Cache API quota) is not the Hub's fault: say so, not "network".
  const stored = async <T>(step: () => Promise<T>): Promise<T> => {
    try {
      return await step();
    } catch (cause) {
      if (cause instanceof HubError) throw cause;
      const why = cause instanceof Error ? cause.message : String(cause);
      throw new HubError(`the cache cannot store the file (${why}); nothing was cached`, {
        repo: ctx.repo,
        revision: ctx.revision,
        file: path,
        reason: "cache",
        cause,
      });
    }
  };
  const headers: Record<string, string> = ctx.token ? { Authorization: `Bearer ${ctx.token}` } : {};
  let writer: BlobWriter = await stored(() => cache.writeBlob(ctx.repo, etag));
  let check = keep ? undefined : await etagCheck(etag, info.size);
  // Filled in place (the size is announced and capped below): the file is in memory once, not as chunks plus a copy.
  const bytes = check ? undefined : new Uint8Array(info.size);
  let loaded = 0;
  try {
    let outcome;
    try {
      outcome = await streamBody(ctx.downloadFetch ?? ctx.fetch, info.url, headers, {
        write: async (chunk) => {
          if (loaded + chunk.length > info.size) {
            throw error(`the server sent more than the announced ${info.size} bytes; nothing was cached`, "truncated");
          }
          bytes?.set(chunk, loaded);
          check?.update(chunk);
          loaded += chunk.length;
          await stored(() => writer.write(chunk));
          onProgress?.({ file: path, loaded, total: info.size });
        },
        restart: async () => {
          await writer.abort();
          writer = await stored(() => cache.writeBlob(ctx.repo, etag));
          if (check) check = (await etagCheck(etag, info.size))!;
          loaded = 0;
        },
      }, { retries: ctx.retries });
    } catch (cause) {
      if (cause instanceof HubError || !(cause instanceof TransportError)) throw cause;
      throw error(
        `download cut short: got ${loaded} of ${info.size} bytes (${cause.message}); nothing was cached, try again`,
        cause.kind,
        cause,
      );
    }
    if (!outcome.ok) {
      const { response } = outcome;
      const seen = { status: response.status, errorCode: response.headers.get("X-Error-Code") ?? undefined };
      throw hubFailure(new Error(await serverText(response)), { ...where, seen });
    }
    if (loaded !== info.size) {
      throw error(
        `download cut short: got ${loaded} of ${info.size} bytes; nothing was cached, try again`,
        "truncated",
      );
    }
    if ((check ? check.matches() : await matchesEtag(etag, bytes!)) === false) {
      throw error(`the ${loaded} bytes received differ from the ETag ${etag}; nothing was cached`, "truncated");
    }
    await stored(() => writer.commit());
    return bytes;
  } catch (cause) {
    await writer.abort().catch(() => {});
    throw cause instanceof HubError ? cause : hubFailure(cause, where);
  }
}
