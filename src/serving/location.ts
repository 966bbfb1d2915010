/**
 * Where an adapter's files are ({@linkcode AdapterLocation}), and opening
 * them: a local folder or a Hub repo at a revision.
 * @module
 */
import type { HubSourceOptions } from "../hub/mod.ts";
import type { FileSource } from "../storage/file_source.ts";
import { localSource } from "../storage/local.ts";

/**
 * A local folder (already checked against the configured roots when it came
 * from a request) or a Hub repo id.
 *
 * @example
 * ```ts
 * import type { AdapterLocation } from "./location.ts";
 * const local: AdapterLocation = { kind: "local", path: "/srv/adapters/python" };
 * const hub: AdapterLocation = { kind: "hub", repo: "org/python-lora", revision: "main" };
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
  | { readonly kind: "hub"; readonly repo: string; readonly revision?: string };

/**
 * Hub settings for adapters loaded from the Hub: endpoint, token, cache,
 * offline mode, fetch (the revision comes with each location).
 *
 * @example
 * ```ts
 * import type { HubOptions } from "./location.ts";
 * const hub: HubOptions = { hubUrl: "https://huggingface.co", cacheDir: "/var/cache/hf" };
 * ```
 */
export type HubOptions = Omit<HubSourceOptions, "revision" | "subfolder">;

/**
 * Identity of a location: the same key means the same adapter files.
 *
 * @example
 * ```ts
 * import { locationKey } from "./location.ts";
 * locationKey({ kind: "hub", repo: "org/lora" }); // "hub:org/lora@main"
 * ```
 */
export function locationKey(location: AdapterLocation): string {
  return location.kind === "local" ? `local:${location.path}` : `hub:${location.repo}@${location.revision ?? "main"}`;
}

/**
 * A location for messages: the folder, or `repo@revision`.
 *
 * @example
 * ```ts
 * import { describeLocation } from "./location.ts";
 * describeLocation({ kind: "local", path: "/srv/adapters/python" }); // "/srv/adapters/python"
 * ```
 */
export function describeLocation(location: AdapterLocation): string {
  return location.kind === "local" ? location.path : `${location.repo}@${location.revision ?? "main"}`;
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
  if (location.kind === "local") return localSource(location.path);
  const { hubSource } = await import("../hub/mod.ts");
  return await hubSource(location.repo, { ...hub, revision: location.revision });
}
