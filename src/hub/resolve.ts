/**
 * Resolution: a user's "path, URL or id" (or a ready FileSource) becomes a
 * {@linkcode FileSource}. An http(s) URL is a remote folder; otherwise
 * PEFT's rule: a string is a local folder when it exists on disk, else it
 * names a Hub repository.
 * @module
 */
import { FileNotFoundError } from "../errors.ts";
import type { FileSource } from "../storage/file_source.ts";
import { isLocalFolder, localSource } from "../storage/local.ts";
import type { NetworkOptions } from "../storage/http.ts";
import { isHttpUrl, urlSource } from "../storage/url.ts";
import type { HubCache } from "./cache.ts";
import type { HubCacheStorage } from "./settings.ts";
import { isValidRepoId } from "./repo_id.ts";

/**
 * Where to find files: the options PEFT's `from_pretrained` takes for
 * locating an adapter or model, in camelCase.
 */
export interface ResolveOptions extends NetworkOptions {
  /** Branch, tag or commit on the Hub (default `main`). */
  revision?: string;
  /** Folder inside the repository or local folder holding the files. */
  subfolder?: string;
  /** Hub access token; defaults to the `HF_TOKEN` environment variable. */
  token?: string;
  /** Cache folder; defaults to `HF_HUB_CACHE` or `HF_HOME/hub`. */
  cacheDir?: string;
  /**
   * Where Hub downloads are kept: `disk` (`cacheDir`), `cache-api` (the web
   * Cache API, kept across page reloads) or `memory`; default `disk` where
   * there is a file system, else `cache-api` where `globalThis.caches`
   * answers (browsers), else `memory`.
   */
  cacheStorage?: HubCacheStorage;
  /** The Cache API cache for `cache-api` (default `peft-edge-hub`). */
  cacheName?: string;
  /** Hub endpoint; defaults to `HF_ENDPOINT` or the public Hub. */
  hubUrl?: string;
  /** Use only the cache, never the network (also `HF_HUB_OFFLINE=1`). */
  localFilesOnly?: boolean;
  /**
   * Check every cached Hub file against its SHA-256 (LFS) or git blob id
   * when read; a blob that fails is removed and downloaded again.
   */
  verifyCache?: boolean;
  /** Called as bytes of a file arrive. */
  onProgress?: (progress: { file: string; loaded: number; total?: number }) => void;
  /** The fetch to use (tests, proxies); defaults to the global fetch. */
  fetch?: typeof fetch;
  /**
   * A Hub cache instance (e.g. one shared `memoryHubCache()` on edge
   * runtimes); overrides `cacheStorage`.
   */
  cache?: HubCache;
}

/** A path, `file:` or http(s) URL, Hub repo id, or an already opened source. */
export type PathOrSource = string | URL | FileSource;

/**
 * Whether a string is meant as a local path regardless of whether it exists:
 * it starts with `.`, `/` or `file:`.
 *
 * @example
 * ```ts
 * import { looksLocal } from "./resolve.ts";
 * looksLocal("./adapters/x"); // true
 * looksLocal("org/name");     // false
 * ```
 */
export function looksLocal(pathOrId: string): boolean {
  return pathOrId.startsWith(".") || pathOrId.startsWith("/") || pathOrId.startsWith("file:");
}

/**
 * Opens the files behind a path, `file:` URL, http(s) URL of a folder, Hub
 * repo id or FileSource. A string that is not an existing folder (and does
 * not start with `.`, `/`, `file:`, `http:` or `https:`) must be a valid Hub
 * repo id (`name` or `org/name`); it is opened lazily with `hubSource`.
 *
 * @example
 * ```ts
 * import { resolveSource } from "./resolve.ts";
 * const src = await resolveSource("tests/fixtures/llama-tiny-lora-qv");
 * await src.read("adapter_config.json");
 * const fromHub = await resolveSource("org/my-lora", { revision: "main", token: "hf_..." });
 * const fromUrl = await resolveSource("https://models.example/llama-tiny/", { timeoutMs: 10_000 });
 * ```
 */
export async function resolveSource(
  location: PathOrSource,
  options: ResolveOptions = {},
): Promise<FileSource> {
  if (location instanceof URL) location = location.href;
  if (typeof location !== "string") return location;
  const pathOrId = location;
  if (isHttpUrl(pathOrId)) {
    const base = pathOrId.replace(/\/*$/, "/");
    const folder = options.subfolder ? `${base}${options.subfolder.replace(/^\/+|\/+$/g, "")}/` : base;
    return urlSource(folder, options);
  }
  if (looksLocal(pathOrId) || await isLocalFolder(pathOrId)) {
    const folder = options.subfolder ? `${pathOrId.replace(/\/+$/, "")}/${options.subfolder}` : pathOrId;
    if (!await isLocalFolder(folder)) {
      throw new FileNotFoundError(`no such folder: ${folder}`, { file: folder });
    }
    return localSource(folder);
  }
  if (isValidRepoId(pathOrId)) {
    // Loaded on first use: local-only users never load the Hub client.
    const { hubSource } = await import("./source.ts");
    return await hubSource(pathOrId, options);
  }
  throw new FileNotFoundError(
    `${pathOrId.slice(0, 200)} is neither an existing local folder, an http(s) URL nor a valid Hub repo id ` +
      "(`name` or `org/name`: letters, digits, '-', '_', '.'; no '--' or '..'; name at most 96 characters)",
    { file: pathOrId.slice(0, 200) },
  );
}
