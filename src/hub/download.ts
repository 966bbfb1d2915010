/**
 * One file's trip from the Hub into a {@linkcode HubCache}: ask the server
 * for its size and ETag, stream the body into a temp blob, check length (and
 * SHA-256 when the ETag is one), then commit. Uses `@huggingface/hub` for
 * every request.
 * @module
 */
import { hub } from "../deps/hub.ts";
import { HubError } from "../errors.ts";
import type { HubCache } from "./cache.ts";
import { type FailureContext, hubFailure } from "./classify.ts";
import { observedFetch } from "./observe.ts";

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
  fetch: typeof fetch;
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

/** Hex SHA-256 of bytes. */
async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Concatenates chunks into one array of known length. */
function concat(chunks: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/**
 * Downloads a file into the cache as blob `etag` and returns its bytes. On
 * any failure (status, network, body shorter or longer than announced,
 * SHA-256 mismatch) the temp blob is removed and a {@linkcode HubError} is
 * thrown; nothing partial is ever visible in the cache.
 *
 * @example
 * ```ts
 * import { downloadBlob, fileInfo } from "./download.ts";
 * import { memoryHubCache } from "./cache.ts";
 * const ctx = { repo: "org/a", revision: "main", endpoint: "https://huggingface.co", fetch };
 * const info = await fileInfo(ctx, "adapter_config.json", "main");
 * if (info) await downloadBlob(ctx, memoryHubCache(), "adapter_config.json", "main", info, "etag");
 * ```
 */
export async function downloadBlob(
  ctx: RequestContext,
  cache: HubCache,
  path: string,
  commit: string,
  info: FileInfo,
  etag: string,
  onProgress?: (progress: FileProgress) => void,
): Promise<Uint8Array> {
  const probe = observedFetch(ctx.fetch);
  const where = failure(ctx, path, probe.seen);
  const cut = (loaded: number, cause?: unknown) =>
    new HubError(
      `download cut short: got ${loaded} of ${info.size} bytes${
        cause === undefined ? "" : ` (${cause instanceof Error ? cause.message : String(cause)})`
      }; nothing was cached, try again`,
      { repo: ctx.repo, revision: ctx.revision, file: path, reason: "truncated", cause },
    );
  let blob: Blob | null;
  try {
    blob = await hub.downloadFile({
      repo: { type: "model", name: ctx.repo },
      path,
      revision: commit,
      hubUrl: ctx.endpoint,
      accessToken: ctx.token,
      fetch: probe.fetch,
      xet: false,
      downloadInfo: info,
    });
  } catch (error) {
    throw hubFailure(error, where);
  }
  if (!blob) throw hubFailure(new Error("file vanished"), { ...where, seen: { status: 404 } });

  const writer = await cache.writeBlob(ctx.repo, etag);
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  try {
    const reader = blob.stream().getReader();
    for (;;) {
      let step: ReadableStreamReadResult<Uint8Array>;
      try {
        step = await reader.read();
      } catch (error) {
        // A failing status was turned into a stream error by the library.
        if (probe.seen.status !== undefined) throw hubFailure(error, where);
        throw cut(loaded, error);
      }
      if (step.done) break;
      loaded += step.value.length;
      if (loaded > info.size) {
        await reader.cancel().catch(() => {});
        throw new HubError(`the server sent more than the announced ${info.size} bytes; nothing was cached`, {
          repo: ctx.repo,
          revision: ctx.revision,
          file: path,
          reason: "truncated",
        });
      }
      chunks.push(step.value);
      await writer.write(step.value);
      onProgress?.({ file: path, loaded, total: info.size });
    }
    if (loaded !== info.size) throw cut(loaded);
    const bytes = concat(chunks, loaded);
    if (/^[0-9a-f]{64}$/.test(etag) && await sha256Hex(bytes) !== etag) {
      throw new HubError(`SHA-256 of the ${loaded} bytes received differs from the ETag ${etag}; nothing was cached`, {
        repo: ctx.repo,
        revision: ctx.revision,
        file: path,
        reason: "truncated",
      });
    }
    await writer.commit();
    return bytes;
  } catch (error) {
    await writer.abort().catch(() => {});
    throw error instanceof HubError ? error : hubFailure(error, where);
  }
}
