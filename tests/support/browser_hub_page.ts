/// <reference lib="dom" />
/**
 * The page of tests/browser_hub_cache.test.ts, bundled with esbuild: loads
 * the test base and adapter by Hub repo id from the test Hub (default
 * options: the Cache API cache, as any page gets), runs the prefill of
 * PEFT's expected inputs and hands back the logits; corrupts a cached
 * blob in place, as a failing disk or a stray script could; lists and
 * empties the cache.
 * @module
 */
import { fromPretrained, HubError, loadBaseModel, Tensor } from "../../mod.ts";
import { cacheKey, DEFAULT_CACHE_NAME, hubCacheStorage, hubSettings } from "../../src/hub/mod.ts";

/** One load: where, which revisions, which Hub options. */
export interface HubLoad {
  hubUrl: string;
  base: string;
  adapter: string;
  baseRevision?: string;
  adapterRevision?: string;
  verifyCache?: boolean;
  localFilesOnly?: boolean;
  retries?: number;
  inputIds: number[];
}

/** The logits, or the error the load ended with. */
export interface HubLoadResult {
  storage: string;
  logits?: number[];
  /** `hubError`: whether it is a `HubError` (`name` is mangled in a minified bundle). */
  error?: { name: string; hubError: boolean; reason?: string; message: string };
}

/** Loads base and adapter by repo id and runs the prefill. */
export async function loadAndRun(job: HubLoad): Promise<HubLoadResult> {
  const storage = await hubCacheStorage(hubSettings({}));
  const hub = {
    hubUrl: job.hubUrl,
    verifyCache: job.verifyCache,
    localFilesOnly: job.localFilesOnly,
    retries: job.retries,
  };
  try {
    const base = await loadBaseModel(job.base, {
      ...hub,
      revision: job.baseRevision,
      device: "wasm",
      wasmPaths: new URL("ort/", location.href).href,
    });
    try {
      const model = await fromPretrained(base, job.adapter, { ...hub, revision: job.adapterRevision });
      const config = model.config as Record<string, number>;
      const heads = config.num_key_value_heads ?? config.num_attention_heads;
      const headDim = config.head_dim ?? config.hidden_size / config.num_attention_heads;
      const n = job.inputIds.length;
      const int64 = (values: number[]) => new Tensor("int64", BigInt64Array.from(values, BigInt), [1, n]);
      const feeds: Record<string, Tensor> = {
        input_ids: int64(job.inputIds),
        attention_mask: int64(Array(n).fill(1)),
        position_ids: int64([...Array(n).keys()]),
      };
      for (const name of model.inputNames.filter((name) => name.startsWith("past_key_values."))) {
        feeds[name] = new Tensor("float32", new Float32Array(), [1, heads, 0, headDim]);
      }
      const out = await model.run(feeds);
      const logits = Array.from(out.logits.data as Float32Array);
      await model.release();
      return { storage, logits };
    } finally {
      await base.release();
    }
  } catch (error) {
    const e = error as Error;
    return {
      storage,
      error: {
        name: e.name,
        hubError: error instanceof HubError,
        reason: error instanceof HubError ? error.reason : undefined,
        message: e.message,
      },
    };
  }
}

/** Flips one byte of the cached blob that `file` of `repo` at `commit` points to; false when not cached. */
export async function corruptCached(repo: string, commit: string, file: string): Promise<boolean> {
  const cache = await caches.open(DEFAULT_CACHE_NAME);
  const etag = await (await cache.match(cacheKey(repo, "snapshots", commit, file)))?.text();
  const blob = etag && await cache.match(cacheKey(repo, "blobs", etag));
  if (!etag || !blob) return false;
  const bytes = new Uint8Array(await blob.arrayBuffer());
  bytes[bytes.length >> 1] ^= 0x40;
  await cache.put(cacheKey(repo, "blobs", etag), new Response(bytes));
  return true;
}

/** The keys of the Cache API cache, as paths. */
export async function cachedKeys(): Promise<string[]> {
  const cache = await caches.open(DEFAULT_CACHE_NAME);
  return (await cache.keys()).map((request) => new URL(request.url).pathname);
}

/** Empties the Cache API cache, as a fresh profile has it. */
export async function clearCache(): Promise<boolean> {
  return await caches.delete(DEFAULT_CACHE_NAME);
}

(globalThis as { hubPage?: unknown }).hubPage = { loadAndRun, corruptCached, cachedKeys, clearCache };
