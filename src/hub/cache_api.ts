/**
 * The {@linkcode HubCache} over the web Cache API (`caches.open(name)`), for
 * browsers: downloads survive a page reload. It keeps the layout of the disk
 * cache, each entry a web-standard `Response` under a synthetic URL on the
 * reserved `.invalid` domain (never a real request), one path segment per
 * part, each percent-encoded:
 *
 * ```text
 * https://hub-cache.invalid/models--org--name/
 *   refs/<revision>             -> body: the commit hash
 *   blobs/<etag>                -> body: the file contents
 *   snapshots/<commit>/<path>   -> body: the blob's etag (the disk cache's symlink)
 *   .no_exist/<commit>/<path>   -> empty body: path absent at commit
 * ```
 *
 * A blob is streamed into `cache.put` as it downloads, so it is never held in
 * memory twice; the stream is closed only by `commit` (after the size and
 * ETag checks), and `cache.put` stores nothing from a stream that errors, so
 * a partial or unchecked download is never visible.
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import type { BlobWriter, HubCache } from "./cache.ts";
import { repoFolderName } from "./repo_id.ts";

/**
 * The Cache API cache Hub files go to unless another name is given.
 *
 * @example
 * ```ts
 * import { DEFAULT_CACHE_NAME } from "./cache_api.ts";
 * const cache = await caches.open(DEFAULT_CACHE_NAME); // what cacheApiHubCache() uses
 * ```
 */
export const DEFAULT_CACHE_NAME = "peft-edge-hub";

/** Origin of the synthetic keys; `.invalid` is reserved (RFC 2606), so no real URL shares it. */
const KEY_ORIGIN = "https://hub-cache.invalid";

/** Immutable content: a worker's Cache API (which honours it) keeps it; browsers ignore it. */
const HEADERS = { "Cache-Control": "max-age=31536000, immutable" };

/** Percent-encodes each `/`-separated segment of a revision or file path. */
function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

/**
 * The synthetic URL of an entry (the key scheme in this module's doc).
 *
 * @example
 * ```ts
 * import { cacheKey } from "./cache_api.ts";
 * cacheKey("org/name", "snapshots", "0123456789abcdef0123456789abcdef01234567", "onnx/model.onnx");
 * // "https://hub-cache.invalid/models--org--name/snapshots/0123.../onnx/model.onnx"
 * ```
 */
export function cacheKey(
  repo: string,
  kind: "refs" | "blobs" | "snapshots" | ".no_exist",
  ...parts: string[]
): string {
  return `${KEY_ORIGIN}/${repoFolderName(repo)}/${kind}/${parts.map(encodePath).join("/")}`;
}

/**
 * Whether the Cache API answers here: `globalThis.caches` exists and a
 * lookup in cache `name` works. Local `workerd` has `caches` but, with no
 * cache configured, every lookup throws "No Cache was configured".
 *
 * @example
 * ```ts
 * import { cacheApiWorks } from "./cache_api.ts";
 * console.log(await cacheApiWorks("peft-edge-hub")); // true in browsers and Deno
 * ```
 */
export async function cacheApiWorks(name: string = DEFAULT_CACHE_NAME): Promise<boolean> {
  const storage = (globalThis as { caches?: CacheStorage }).caches;
  if (!storage) return false;
  try {
    await (await storage.open(name)).match(`${KEY_ORIGIN}/probe`);
    return true;
  } catch {
    return false;
  }
}

/** The part of the Web Locks API (`navigator.locks`) used here. */
interface Locks {
  request(name: string, callback: () => Promise<void>): Promise<unknown>;
}

/**
 * Holds the Web Lock `name` until the returned function is called; where
 * the lock cannot be had (no Web Locks, an opaque origin), goes on without.
 */
function webLock(locks: Locks, name: string): Promise<() => Promise<void>> {
  const none = () => Promise.resolve();
  return new Promise((acquired) => {
    try {
      locks.request(name, () =>
        new Promise<void>((release) =>
          acquired(() => {
            release();
            return Promise.resolve();
          })
        )).catch(() => acquired(none));
    } catch {
      acquired(none);
    }
  });
}

/**
 * A {@linkcode HubCache} in the Cache API cache `name` (of `storage`,
 * default `globalThis.caches`). The cache is opened on first use. While a
 * blob downloads, the Web Lock `<name>:models--org--name/<etag>` is held
 * where `navigator.locks` exists (the disk cache's `.locks/` files), so two
 * tabs of one origin never download one blob twice.
 *
 * @example
 * ```ts
 * import { cacheApiHubCache } from "./cache_api.ts";
 * import { hubSource } from "./source.ts";
 * const adapter = await hubSource("org/my-lora", { cache: cacheApiHubCache("my-app-models") });
 * ```
 */
export function cacheApiHubCache(name: string = DEFAULT_CACHE_NAME, storage?: CacheStorage): HubCache {
  const store = storage ?? (globalThis as { caches?: CacheStorage }).caches;
  if (!store) {
    throw new UnsupportedError("this runtime has no Cache API (globalThis.caches); use the disk or memory cache", {
      key: "caches",
    });
  }
  const locks = (globalThis as { navigator?: { locks?: Locks } }).navigator?.locks;
  let opened: Promise<Cache> | undefined;
  const open = () => opened ??= store.open(name);
  const text = async (key: string) => {
    const hit = await (await open()).match(key);
    return hit ? (await hit.text()).trim() || undefined : undefined;
  };
  const has = async (key: string) => {
    const hit = await (await open()).match(key);
    await hit?.body?.cancel();
    return hit !== undefined;
  };
  const put = async (key: string, body: string) =>
    await (await open()).put(key, new Response(body, { headers: HEADERS }));
  const blobOf = (repo: string, commit: string, path: string) => text(cacheKey(repo, "snapshots", commit, path));

  return {
    location: `cache-api:${name}`,
    readRef: (repo, revision) => text(cacheKey(repo, "refs", revision)),
    writeRef: (repo, revision, commit) => put(cacheKey(repo, "refs", revision), commit),
    async readFile(repo, commit, path) {
      const etag = await blobOf(repo, commit, path);
      if (etag === undefined) return undefined;
      const hit = await (await open()).match(cacheKey(repo, "blobs", etag));
      return hit ? new Uint8Array(await hit.arrayBuffer()) : undefined;
    },
    async hasFile(repo, commit, path) {
      // A pointer whose blob was evicted (storage pressure) is no file, as a dangling symlink is none on disk.
      const etag = await blobOf(repo, commit, path);
      return etag !== undefined && await has(cacheKey(repo, "blobs", etag));
    },
    isMissing: (repo, commit, path) => has(cacheKey(repo, ".no_exist", commit, path)),
    markMissing: (repo, commit, path) => put(cacheKey(repo, ".no_exist", commit, path), ""),
    hasBlob: (repo, etag) => has(cacheKey(repo, "blobs", etag)),
    async writeBlob(repo, etag): Promise<BlobWriter> {
      const cache = await open();
      // Readable high-water mark 0: each write waits until cache.put has taken the chunk.
      const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
      const writer = writable.getWriter();
      const stored = cache.put(cacheKey(repo, "blobs", etag), new Response(readable, { headers: HEADERS }));
      stored.catch(() => {}); // awaited by commit or abort; never an unhandled rejection
      return {
        write: (chunk) => writer.write(chunk),
        async commit() {
          await writer.close();
          await stored;
        },
        async abort() {
          await writer.abort(new Error("download abandoned")).catch(() => {});
          await stored.catch(() => {});
        },
      };
    },
    link: (repo, commit, path, etag) => put(cacheKey(repo, "snapshots", commit, path), etag),
    blobOf,
    async discard(repo, commit, path, etag) {
      const cache = await open();
      await cache.delete(cacheKey(repo, "blobs", etag));
      await cache.delete(cacheKey(repo, "snapshots", commit, path));
    },
    lock: locks ? (repo, etag) => webLock(locks, `${name}:${repoFolderName(repo)}/${etag}`) : undefined,
  };
}
