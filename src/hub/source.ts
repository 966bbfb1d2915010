/**
 * {@linkcode hubSource}: a Hub repository as a lazy {@linkcode FileSource}.
 * Files are downloaded on first read through `@huggingface/hub` and kept in
 * a Python-compatible cache; a pinned commit already in the cache costs no
 * request at all.
 * @module
 */
import { HubError } from "../errors.ts";
import type { FileSource, RangeFile } from "../storage/file_source.ts";
import { safetensorsOnlyError } from "../storage/bin_only.ts";
import { boundedFetch, type NetworkOptions } from "../storage/http.ts";
import type { HubCache } from "./cache.ts";
import { openHubCache } from "./open_cache.ts";
import {
  blobName,
  downloadBlob,
  downloadBlobToCache,
  type FileInfo,
  fileInfo,
  type FileProgress,
  type RequestContext,
} from "./download.ts";
import { isValidRepoId, unsafeRepoPath } from "./repo_id.ts";
import { hubSettings, type HubSettingsInput, readTokenFile } from "./settings.ts";
import { matchesEtag, matchesEtagRanges } from "./verify.ts";
import { type Resolution, resolveRevision, RevisionFailure } from "./revision.ts";

/**
 * Options of {@linkcode hubSource}: PEFT's `from_pretrained` Hub options.
 *
 * @example
 * ```ts
 * import type { HubSourceOptions } from "./source.ts";
 * const options: HubSourceOptions = { revision: "v1.0", subfolder: "adapters/qv", onProgress: (p) => console.log(p) };
 * ```
 */
export interface HubSourceOptions extends HubSettingsInput, NetworkOptions {
  /** Branch, tag or 40-hex commit (default `main`). */
  revision?: string;
  /** Folder inside the repo that holds the files. */
  subfolder?: string;
  /** Called as bytes of each downloaded file arrive. */
  onProgress?: (progress: FileProgress) => void;
  /** The fetch to use (tests, proxies); defaults to the global fetch. */
  fetch?: typeof fetch;
  /**
   * A cache instance (one `memoryHubCache()` shared between loads, a
   * `cacheApiHubCache(name)`, your own); it overrides `cacheStorage`, which
   * otherwise chooses (disk where there is a file system, else the Cache API
   * in browsers, else memory).
   */
  cache?: HubCache;
  /**
   * Check every cached file against its ETag (SHA-256 for LFS files, git
   * blob id for others) when it is read (or once when opened for ranged
   * reads); a blob that fails is removed and downloaded again (offline: a
   * `HubError` with reason `corrupt`).
   * Downloads are always checked.
   */
  verifyCache?: boolean;
}

/**
 * A Hub repo opened as a {@linkcode FileSource}.
 *
 * @example
 * ```ts
 * import { hubSource } from "./source.ts";
 * const src = await hubSource("org/my-lora");
 * console.log(src.repo, src.revision, await src.commit());
 * ```
 */
export interface HubFileSource extends FileSource {
  /** Repo id, `org/name`. */
  readonly repo: string;
  /** Revision asked for. */
  readonly revision: string;
  /** Folder inside the repo (`""` for the root). */
  readonly subfolder: string;
  /** Where files are cached. */
  readonly cache: HubCache;
  /** The commit the revision resolves to (asks the server unless pinned or offline). */
  commit(): Promise<string>;
}

/** An error about the arguments themselves, before any request. */
function invalid(message: string, repo: string, revision: string, file?: string): HubError {
  return new HubError(message, { repo, revision, file, reason: "invalid" });
}

/**
 * Opens a Hub model repo (adapter or base model) as a {@linkcode FileSource}.
 * Makes no request until a file is read. Endpoint: `hubUrl`, else
 * `HF_ENDPOINT`, else https://huggingface.co; token: `token`, else
 * `HF_TOKEN`; cache: `cacheDir`, else `HF_HUB_CACHE` / `HF_HOME/hub` /
 * `~/.cache/huggingface/hub`; cache only with `localFilesOnly` or
 * `HF_HUB_OFFLINE=1`. Failures are {@linkcode HubError}s naming repo,
 * revision and file.
 *
 * @example
 * ```ts
 * import { hubSource } from "./source.ts";
 * const adapter = await hubSource("peft-internal-testing/tiny-lora", { revision: "main" });
 * const config = JSON.parse(new TextDecoder().decode(await adapter.read("adapter_config.json")));
 * ```
 */
export async function hubSource(repoId: string, options: HubSourceOptions = {}): Promise<HubFileSource> {
  const revision = options.revision || "main";
  if (!isValidRepoId(repoId)) {
    throw invalid(
      "not a valid repo id (expected `name` or `org/name`: letters, digits, '-', '_', '.'; no '--' or '..'; at most 96 characters)",
      repoId,
      revision,
    );
  }
  const badRevision = unsafeRepoPath(revision);
  if (badRevision) throw invalid(`the revision ${badRevision}`, repoId, revision);
  const subfolder = (options.subfolder ?? "").replace(/^\/+|\/+$/g, "");
  const badSubfolder = subfolder === "" ? undefined : unsafeRepoPath(subfolder);
  if (badSubfolder) throw invalid(`the subfolder ${badSubfolder}`, repoId, revision, subfolder);

  const settings = hubSettings(options);
  settings.token ??= await readTokenFile();
  if (settings.token !== undefined && !settings.token.startsWith("hf_")) {
    throw invalid("the token is not a Hugging Face access token (they start with hf_)", repoId, revision);
  }
  const baseFetch = options.fetch ?? ((input, init) => fetch(input, init));
  const ctx: RequestContext = {
    repo: repoId,
    revision,
    endpoint: settings.endpoint,
    token: settings.token,
    fetch: boundedFetch(baseFetch as typeof fetch, options, { retryNetwork: false }),
    downloadFetch: boundedFetch(baseFetch as typeof fetch, options),
    retries: options.retries,
  };
  const cache = options.cache ?? await openHubCache(settings);

  let resolving: Promise<Resolution> | undefined;
  /** The revision's commit; memoized unless it came from a network fallback. */
  const resolved = (): Promise<Resolution> => {
    if (resolving) return resolving;
    const attempt = resolveRevision(ctx, cache, settings.offline);
    resolving = attempt;
    attempt.then(
      (r) => {
        if (r.networkError && resolving === attempt) resolving = undefined;
      },
      () => {
        if (resolving === attempt) resolving = undefined;
      },
    );
    return attempt;
  };
  const known = new Map<string, FileInfo>();
  const inFlight = new Map<string, Promise<Uint8Array>>();

  const repoPath = (file: string): string => {
    const bad = unsafeRepoPath(file);
    if (bad) throw invalid(`the file name ${bad}`, repoId, revision, file);
    return subfolder ? `${subfolder}/${file}` : file;
  };

  /** Resolution, with failures reported against `path`. */
  const commitFor = async (path: string): Promise<Resolution> => {
    try {
      return await resolved();
    } catch (failure) {
      throw failure instanceof RevisionFailure ? failure.forFile(path) : failure;
    }
  };

  /** The error for a file the repo does not have. */
  const notFound = async (file: string, path: string, commit: string): Promise<Error> =>
    await safetensorsOnlyError(source, file) ??
      new HubError(`404: file not found in the repo (commit ${commit})`, {
        repo: repoId,
        revision,
        file: path,
        status: 404,
        reason: "not_found",
      });

  /**
   * Whether a cached file of `path` passes `verifyCache` (always true without it), given how to check its bytes
   * against an ETag; one that fails is removed (then fetched again; offline, a `corrupt` error).
   */
  const passesCheck = async (
    path: string,
    commit: string,
    matches: (etag: string) => Promise<boolean | undefined>,
  ): Promise<boolean> => {
    if (!options.verifyCache) return true;
    const etag = await cache.blobOf(repoId, commit, path);
    if (etag === undefined || await matches(etag) !== false) return true;
    await cache.discard(repoId, commit, path, etag);
    if (settings.offline) {
      throw new HubError(
        `the cached blob ${etag} fails its check (corrupt or truncated) and was removed; offline mode, so it cannot be fetched again`,
        { repo: repoId, revision, file: path, reason: "corrupt", detail: `cache ${cache.location}` },
      );
    }
    return false;
  };

  /** A cached file, or `undefined`; with `verifyCache`, one that fails its ETag is removed first. */
  const cachedFile = async (path: string, commit: string): Promise<Uint8Array | undefined> => {
    const cached = await cache.readFile(repoId, commit, path);
    return cached && await passesCheck(path, commit, (etag) => matchesEtag(etag, cached)) ? cached : undefined;
  };

  /**
   * The file's bytes, downloaded into the cache first where needed; with `keep` false, only the download into the
   * cache (its bytes are never held whole, to be read range by range from there).
   */
  const fetchFile = async (file: string, path: string, keep: boolean): Promise<Uint8Array | undefined> => {
    const { commit, networkError } = await commitFor(path);
    if (!keep && await cache.hasFile(repoId, commit, path)) return undefined;
    const cached = keep ? await cachedFile(path, commit) : undefined;
    if (cached) return cached;
    if (await cache.isMissing(repoId, commit, path)) throw await notFound(file, path, commit);
    if (networkError) throw networkError.forFile(path, "the file is not in the cache");
    if (settings.offline) {
      throw new HubError(
        `offline mode (localFilesOnly or HF_HUB_OFFLINE=1) and the file is not in the cache (commit ${commit})`,
        { repo: repoId, revision, file: path, reason: "offline", detail: `cache ${cache.location}` },
      );
    }
    const info = known.get(path) ?? await fileInfo(ctx, path, commit);
    if (!info) {
      await cache.markMissing(repoId, commit, path);
      throw await notFound(file, path, commit);
    }
    const etag = blobName(info.etag);
    if (!etag) {
      throw new HubError(`the server sent an unusable ETag ${JSON.stringify(info.etag)}`, {
        repo: repoId,
        revision,
        file: path,
        reason: "server",
      });
    }
    // One process at a time per blob (Python's .locks/ files); a blob another
    // process finished meanwhile, or the same content under another path or
    // commit, is linked without a download.
    const unlock = await cache.lock?.(repoId, etag);
    try {
      if (await cache.hasBlob(repoId, etag)) {
        await cache.link(repoId, commit, path, etag);
        // Unless it fails its check (verifyCache: done where it is opened without `keep`) or vanished meanwhile.
        if (!keep && await cache.hasFile(repoId, commit, path)) return undefined;
        const linked = keep ? await cachedFile(path, commit) : undefined;
        if (linked) return linked;
      }
      if (!keep) {
        await downloadBlobToCache(ctx, cache, path, info, etag, options.onProgress);
        await cache.link(repoId, commit, path, etag);
        return undefined;
      }
      const bytes = await downloadBlob(ctx, cache, path, info, etag, options.onProgress);
      await cache.link(repoId, commit, path, etag);
      return bytes;
    } finally {
      known.delete(path);
      await unlock?.();
    }
  };

  const source: HubFileSource = {
    location: `${repoId}@${revision}${subfolder ? `/${subfolder}` : ""}`,
    repo: repoId,
    revision,
    subfolder,
    cache,
    commit: async () => (await commitFor("")).commit,
    read(file) {
      let path: string;
      try {
        path = repoPath(file);
      } catch (error) {
        return Promise.reject(error);
      }
      const running = inFlight.get(path);
      if (running) return running;
      const job = fetchFile(file, path, true).then((bytes) => bytes!).finally(() => inFlight.delete(path));
      inFlight.set(path, job);
      return job;
    },
    async openRanges(file): Promise<RangeFile | undefined> {
      const path = repoPath(file);
      if (!cache.openRanges) return undefined; // memory and Cache API caches: read whole
      const { commit } = await commitFor(path);
      for (let attempt = 0;; attempt++) {
        // Not cached yet: downloaded (checked against its ETag as it arrives, never held whole) and linked as
        // `read` does.
        if (!(await cache.hasFile(repoId, commit, path))) await fetchFile(file, path, false);
        const opened = await cache.openRanges(repoId, commit, path);
        if (!opened || !options.verifyCache) return opened;
        // A whole read checks the bytes it returns, which cannot change afterwards. Its equivalent here: the opened
        // file is checked once, through reads that refuse a file other than the one opened, so every later range
        // read (each refusing a changed file too) comes from the bytes that passed. Hashed chunk by chunk: the
        // check does not hold the file whole either.
        if (await passesCheck(path, commit, (etag) => matchesEtagRanges(etag, opened))) return opened;
        if (attempt > 0) {
          throw new HubError("the blob fetched again fails its check too; not read", {
            repo: repoId,
            revision,
            file: path,
            reason: "corrupt",
            detail: `cache ${cache.location}`,
          });
        }
      }
    },
    async exists(file) {
      const path = repoPath(file);
      const { commit, networkError } = await commitFor(path);
      if (await cache.hasFile(repoId, commit, path)) return true;
      if (await cache.isMissing(repoId, commit, path)) return false;
      if (settings.offline || networkError) return false;
      const info = await fileInfo(ctx, path, commit);
      if (!info) {
        await cache.markMissing(repoId, commit, path);
        return false;
      }
      known.set(path, info);
      return true;
    },
  };
  return source;
}
