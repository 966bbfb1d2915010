/**
 * Cache storage for Hub files, modelled on Python `huggingface_hub`'s cache:
 * per repo, `refs` (revision -> commit), `blobs` (content by ETag),
 * `snapshots` (commit + path -> blob) and `.no_exist` (commit + path known
 * to be absent). {@linkcode memoryHubCache} keeps it in memory;
 * `diskHubCache` (disk_cache.ts) on disk, `cacheApiHubCache` (cache_api.ts)
 * in the web Cache API; open_cache.ts chooses among them.
 * @module
 */

import type { RangeFile } from "../storage/file_source.ts";

/**
 * Receives a blob being downloaded; nothing is visible until `commit`.
 *
 * @example
 * ```ts
 * import { memoryHubCache } from "./cache.ts";
 * const writer = await memoryHubCache().writeBlob("org/name", "abc123");
 * await writer.write(new Uint8Array([1, 2, 3]));
 * await writer.commit();
 * ```
 */
export interface BlobWriter {
  /** Appends a chunk. */
  write(chunk: Uint8Array): Promise<void>;
  /** Makes the blob visible under its ETag (the rename from `.incomplete`). */
  commit(): Promise<void>;
  /** Drops what was written; the cache is as before. */
  abort(): Promise<void>;
}

/**
 * Where downloaded Hub files are kept. All methods take the repo id
 * (`org/name`); `path` is a file path inside the repo.
 *
 * @example
 * ```ts
 * import { memoryHubCache } from "./cache.ts";
 * const cache = memoryHubCache();
 * await cache.writeRef("org/name", "main", "0123456789abcdef0123456789abcdef01234567");
 * ```
 */
export interface HubCache {
  /** For messages: a folder path or `memory`. */
  readonly location: string;
  /** The commit a branch or tag pointed to when last seen. */
  readRef(repo: string, revision: string): Promise<string | undefined>;
  /** Records the commit a branch or tag points to. */
  writeRef(repo: string, revision: string, commit: string): Promise<void>;
  /** A file of a snapshot, or `undefined` when not cached. */
  readFile(repo: string, commit: string, path: string): Promise<Uint8Array | undefined>;
  /**
   * Opens a cached file of a snapshot for ranged reads (`FileSource.openRanges`'s
   * contract); only caches on a local disk have it. Resolves to undefined where this
   * runtime cannot read synchronously; a file that is not cached is a `FileNotFoundError`.
   */
  openRanges?(repo: string, commit: string, path: string): Promise<RangeFile | undefined>;
  /** Whether a file of a snapshot is cached. */
  hasFile(repo: string, commit: string, path: string): Promise<boolean>;
  /** Whether the file is recorded as absent at this commit. */
  isMissing(repo: string, commit: string, path: string): Promise<boolean>;
  /** Records that the file does not exist at this commit. */
  markMissing(repo: string, commit: string, path: string): Promise<void>;
  /** Whether the blob named by this ETag is cached. */
  hasBlob(repo: string, etag: string): Promise<boolean>;
  /** Starts writing a blob named by its (normalized) ETag. */
  writeBlob(repo: string, etag: string): Promise<BlobWriter>;
  /** Makes `path` at `commit` point to the blob `etag`. */
  link(repo: string, commit: string, path: string, etag: string): Promise<void>;
  /** The ETag of the blob `path` at `commit` points to, when known. */
  blobOf(repo: string, commit: string, path: string): Promise<string | undefined>;
  /** Removes the blob `etag` and the pointer of `path` at `commit` (a blob that failed its check). */
  discard(repo: string, commit: string, path: string, etag: string): Promise<void>;
  /**
   * Holds other processes off the blob `etag` until the returned function
   * is called (Python `huggingface_hub`'s `.locks/` files); optional.
   */
  lock?(repo: string, etag: string): Promise<() => Promise<void>>;
}

/** Joins the parts of a map key; `\n` never occurs in ids, revisions or paths. */
function key(...parts: string[]): string {
  return parts.join("\n");
}

/** Concatenates chunks into one array. */
function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/**
 * An in-memory {@linkcode HubCache}, for edge functions (browsers keep Hub
 * files in the Cache API). Keep one and pass it as `cache` to every load to
 * share downloads between them.
 *
 * @example
 * ```ts
 * import { memoryHubCache } from "./cache.ts";
 * import { hubSource } from "./source.ts";
 * const cache = memoryHubCache();
 * const adapter = await hubSource("org/my-lora", { cache });
 * ```
 */
export function memoryHubCache(): HubCache {
  const refs = new Map<string, string>();
  const blobs = new Map<string, Uint8Array>();
  const snapshots = new Map<string, string>();
  const missing = new Set<string>();
  return {
    location: "memory",
    readRef: (repo, revision) => Promise.resolve(refs.get(key(repo, revision))),
    writeRef: (repo, revision, commit) => {
      refs.set(key(repo, revision), commit);
      return Promise.resolve();
    },
    readFile: (repo, commit, path) => {
      const etag = snapshots.get(key(repo, commit, path));
      return Promise.resolve(etag === undefined ? undefined : blobs.get(key(repo, etag)));
    },
    hasFile: (repo, commit, path) => Promise.resolve(snapshots.has(key(repo, commit, path))),
    isMissing: (repo, commit, path) => Promise.resolve(missing.has(key(repo, commit, path))),
    markMissing: (repo, commit, path) => {
      missing.add(key(repo, commit, path));
      return Promise.resolve();
    },
    hasBlob: (repo, etag) => Promise.resolve(blobs.has(key(repo, etag))),
    writeBlob: (repo, etag) => {
      let chunks: Uint8Array[] = [];
      return Promise.resolve({
        write: (chunk) => {
          chunks.push(chunk.slice());
          return Promise.resolve();
        },
        commit: () => {
          blobs.set(key(repo, etag), concat(chunks));
          chunks = [];
          return Promise.resolve();
        },
        abort: () => {
          chunks = [];
          return Promise.resolve();
        },
      });
    },
    link: (repo, commit, path, etag) => {
      snapshots.set(key(repo, commit, path), etag);
      return Promise.resolve();
    },
    blobOf: (repo, commit, path) => Promise.resolve(snapshots.get(key(repo, commit, path))),
    discard: (repo, commit, path, etag) => {
      blobs.delete(key(repo, etag));
      snapshots.delete(key(repo, commit, path));
      return Promise.resolve();
    },
  };
}
