/**
 * Opening the files of an adapter location the pool validated.
 * @module
 */
import type { FileSource } from "../storage/file_source.ts";
import { localSource } from "../storage/local.ts";
import type { AdapterLocation, HostLoadOptions } from "./host.ts";

/**
 * Opens the files of a location. Hub ids never fall back to a local folder
 * of the same name, and the Hub client is loaded only when one is used.
 *
 * @example
 * ```ts
 * import { openLocation } from "./open_location.ts";
 * const files = await openLocation({ kind: "local", path: "examples/demo/byte-llama-python-lora" }, { name: "python" });
 * ```
 */
export async function openLocation(location: AdapterLocation, options: HostLoadOptions): Promise<FileSource> {
  if (location.kind === "local") return localSource(location.path);
  const { hubSource } = await import("../hub/mod.ts");
  return await hubSource(location.repo, { ...options.hub, revision: location.revision });
}
