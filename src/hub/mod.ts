/**
 * Hugging Face Hub access: open a repo as a lazy FileSource with a
 * Python-compatible cache, offline mode and typed errors.
 *
 * @example
 * ```ts
 * import { hubSource } from "./mod.ts";
 * const adapter = await hubSource("org/my-lora", { revision: "main", cacheDir: "/tmp/hf" });
 * const weights = await adapter.read("adapter_model.safetensors");
 * ```
 * @module
 */
export { type HubFileSource, hubSource, type HubSourceOptions } from "./source.ts";
export { type BlobWriter, type HubCache, memoryHubCache } from "./cache.ts";
export { diskHubCache } from "./disk_cache.ts";
export { cacheApiHubCache, cacheKey, DEFAULT_CACHE_NAME } from "./cache_api.ts";
export { hubCacheStorage, openHubCache } from "./open_cache.ts";
export { isCommitHash, isValidRepoId, repoFolderName } from "./repo_id.ts";
export { DEFAULT_HUB_URL, defaultCacheDir, type HubCacheStorage, type HubSettings, hubSettings } from "./settings.ts";
export { looksLocal, type PathOrSource, type ResolveOptions, resolveSource } from "./resolve.ts";
export type { FileProgress } from "./download.ts";
