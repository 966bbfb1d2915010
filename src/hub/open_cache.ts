/**
 * The one place that decides which {@linkcode HubCache} a load uses when none
 * is passed: the `cacheStorage` setting, else the runtime's best: the disk
 * cache where there is a file system (Deno, Bun, Node: Deno also has a Cache
 * API, but the disk cache is shared with Python), the Cache API where
 * `globalThis.caches` exists and answers (browsers; not local `workerd`,
 * whose `caches` throws unless a cache is configured), else memory.
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import { localFs } from "../runtime/fs.ts";
import { type HubCache, memoryHubCache } from "./cache.ts";
import { cacheApiHubCache, cacheApiWorks } from "./cache_api.ts";
import { diskHubCache } from "./disk_cache.ts";
import type { HubCacheStorage, HubSettings } from "./settings.ts";

/** Whether `node:fs/promises` can be loaded here. */
async function hasFileSystem(): Promise<boolean> {
  try {
    await localFs();
    return true;
  } catch {
    return false;
  }
}

/**
 * The storage the settings ask for, or the runtime's default.
 *
 * @example
 * ```ts
 * import { hubCacheStorage } from "./open_cache.ts";
 * import { hubSettings } from "./settings.ts";
 * console.log(await hubCacheStorage(hubSettings({}))); // "disk" under Deno, "cache-api" in a browser
 * ```
 */
export async function hubCacheStorage(settings: HubSettings): Promise<HubCacheStorage> {
  if (settings.cacheStorage) return settings.cacheStorage;
  if (settings.cacheDir !== undefined && await hasFileSystem()) return "disk";
  return await cacheApiWorks(settings.cacheName) ? "cache-api" : "memory";
}

/**
 * Opens the cache the settings choose (see {@linkcode hubCacheStorage}).
 * An {@linkcode UnsupportedError} for `disk` with no cache folder known
 * (no `cacheDir`, no home folder) or no file system, and for `cache-api`
 * without `globalThis.caches`.
 *
 * @example
 * ```ts
 * import { openHubCache } from "./open_cache.ts";
 * import { hubSettings } from "./settings.ts";
 * const cache = await openHubCache(hubSettings({ cacheStorage: "cache-api", cacheName: "models" }));
 * console.log(cache.location); // "cache-api:models"
 * ```
 */
export async function openHubCache(settings: HubSettings): Promise<HubCache> {
  const storage = await hubCacheStorage(settings);
  if (storage === "memory") return memoryHubCache();
  if (storage === "cache-api") return cacheApiHubCache(settings.cacheName);
  if (settings.cacheDir === undefined) {
    throw new UnsupportedError("cacheStorage is disk but no cache folder is known: pass cacheDir or set HF_HUB_CACHE", {
      key: "cacheDir",
    });
  }
  await localFs(); // an UnsupportedError where there is no file system
  return diskHubCache(settings.cacheDir);
}
