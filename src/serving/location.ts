/**
 * Where an adapter's files are ({@linkcode AdapterLocation}), and opening
 * them: a local folder, a Hub repo at a revision, an http(s) URL of a
 * folder, or an already opened {@linkcode FileSource}.
 * @module
 */
import type { HubSourceOptions } from "../hub/mod.ts";
import type { FileSource } from "../storage/file_source.ts";
import { localSource } from "../storage/local.ts";
import { urlSource } from "../storage/url.ts";

/**
 * A local folder (already checked against the configured roots when it came
 * from a request), a Hub repo id, an http(s) URL of a folder (files fetched
 * relative to it), or any {@linkcode FileSource} (memory, R2/S3/KV, ...).
 * Only code builds `url` and `source` locations: the HTTP admin route
 * resolves ids to `local` or `hub` only.
 *
 * @example
 * ```ts
 * import type { AdapterLocation } from "./location.ts";
 * import { memorySource } from "../storage/memory.ts";
 * const local: AdapterLocation = { kind: "local", path: "/srv/adapters/python" };
 * const hub: AdapterLocation = { kind: "hub", repo: "org/python-lora", revision: "main" };
 * const url: AdapterLocation = { kind: "url", url: "https://models.example/python-lora/" };
 * const source: AdapterLocation = { kind: "source", source: memorySource("in-memory", {}), id: "in-memory" };
 * ```
 */
export type AdapterLocation =
  | {
    readonly kind: "local";
    /** The folder. */
    readonly path: string;
    /** The name it was asked for under a root, when it came from a request. */
    readonly id?: string;
  }
  | { readonly kind: "hub"; readonly repo: string; readonly revision?: string }
  | {
    readonly kind: "url";
    /** The folder's http(s) URL. */
    readonly url: string | URL;
  }
  | {
    readonly kind: "source";
    /** The opened files; the same location means the same object. */
    readonly source: FileSource;
    /** A name for listings and messages (default `source`). */
    readonly id?: string;
  };

/**
 * Hub settings for adapters loaded from the Hub: endpoint, token, cache,
 * offline mode, fetch (the revision comes with each location). The fetch,
 * timeouts, retries and progress callback apply to URL locations too.
 *
 * @example
 * ```ts
 * import type { HubOptions } from "./location.ts";
 * const hub: HubOptions = { hubUrl: "https://huggingface.co", cacheDir: "/var/cache/hf" };
 * ```
 */
export type HubOptions = Omit<HubSourceOptions, "revision" | "subfolder">;

/** A URL for messages and identity: no credentials, query or fragment. */
function shownUrl(url: string | URL): string {
  try {
    const parsed = new URL(String(url));
    return `${parsed.protocol}//${parsed.host}${parsed.pathname.replace(/\/*$/, "/")}`;
  } catch {
    return String(url).slice(0, 200);
  }
}

/** A URL as the folder it names (query kept: a signed URL is another location). */
function urlIdentity(url: string | URL): string {
  try {
    const parsed = new URL(String(url));
    parsed.pathname = parsed.pathname.replace(/\/*$/, "/");
    return parsed.href;
  } catch {
    return String(url);
  }
}

/**
 * Whether two locations name the same adapter files (a `source` location is
 * the same only with the same source object).
 *
 * @example
 * ```ts
 * import { sameLocation } from "./location.ts";
 * sameLocation({ kind: "hub", repo: "org/lora" }, { kind: "hub", repo: "org/lora", revision: "main" }); // true
 * ```
 */
export function sameLocation(a: AdapterLocation, b: AdapterLocation): boolean {
  switch (a.kind) {
    case "local":
      return b.kind === "local" && a.path === b.path;
    case "hub":
      return b.kind === "hub" && a.repo === b.repo && (a.revision ?? "main") === (b.revision ?? "main");
    case "url":
      return b.kind === "url" && urlIdentity(a.url) === urlIdentity(b.url);
    case "source":
      return b.kind === "source" && a.source === b.source;
  }
}

/**
 * A location for messages and listings: the folder, `repo@revision`, the
 * URL without credentials or query, or the source's id.
 *
 * @example
 * ```ts
 * import { describeLocation } from "./location.ts";
 * describeLocation({ kind: "local", path: "/srv/adapters/python" }); // "/srv/adapters/python"
 * ```
 */
export function describeLocation(location: AdapterLocation): string {
  switch (location.kind) {
    case "local":
      return location.path;
    case "hub":
      return `${location.repo}@${location.revision ?? "main"}`;
    case "url":
      return shownUrl(location.url);
    case "source":
      return location.id ?? "source";
  }
}

/**
 * Opens the files of a location. Hub ids never fall back to a local folder
 * of the same name, and the Hub client is loaded only when one is used.
 *
 * @example
 * ```ts
 * import { openLocation } from "./location.ts";
 * const files = await openLocation({ kind: "local", path: "examples/demo/byte-llama-python-lora" });
 * ```
 */
export async function openLocation(location: AdapterLocation, hub: HubOptions = {}): Promise<FileSource> {
  switch (location.kind) {
    case "local":
      return localSource(location.path);
    case "url": {
      const { fetch, timeoutMs, retries, onProgress } = hub;
      return urlSource(location.url, { fetch, timeoutMs, retries, onProgress });
    }
    case "source":
      return location.source;
    case "hub": {
      const { hubSource } = await import("../hub/mod.ts");
      return await hubSource(location.repo, { ...hub, revision: location.revision });
    }
  }
}
