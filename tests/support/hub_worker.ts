/**
 * A worker for tests/hub_cache_workerd.test.ts: reads one file of a repo on
 * the test Hub (`?hub=<url>`) with the default Hub options (or
 * `?storage=<cacheStorage>`), and answers which cache storage was chosen,
 * the file's size and any error.
 * @module
 */
import { type HubCacheStorage, hubCacheStorage, hubSettings, hubSource } from "../../src/hub/mod.ts";

export default {
  async fetch(request: Request): Promise<Response> {
    const params = new URL(request.url).searchParams;
    const hubUrl = params.get("hub") ?? "";
    const cacheStorage = (params.get("storage") ?? undefined) as HubCacheStorage | undefined;
    try {
      const storage = await hubCacheStorage(hubSettings({ cacheStorage }));
      const source = await hubSource("test/llama-tiny-lora-qv", { hubUrl, cacheStorage });
      const bytes = await source.read("adapter_model.safetensors");
      return Response.json({ storage, location: source.cache.location, size: bytes.length });
    } catch (error) {
      return Response.json({ error: String(error) });
    }
  },
};
