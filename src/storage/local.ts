/**
 * A {@linkcode FileSource} over a local folder.
 * @module
 */
import { FileNotFoundError } from "../errors.ts";
import { localFs } from "../runtime/fs.ts";
import type { FileSource } from "./file_source.ts";

/**
 * Turns a path or `file:` URL into a plain path.
 *
 * @example
 * ```ts
 * import { toLocalPath } from "./local.ts";
 * toLocalPath("file:///models/x"); // "/models/x"
 * ```
 */
export function toLocalPath(pathOrUrl: string): string {
  if (pathOrUrl.startsWith("file:")) return decodeURIComponent(new URL(pathOrUrl).pathname);
  return pathOrUrl;
}

/** Joins a root folder and a relative file name with `/`. */
function join(root: string, file: string): string {
  return root.endsWith("/") ? root + file : `${root}/${file}`;
}

/**
 * Reads files below a local folder.
 *
 * @example
 * ```ts
 * import { localSource } from "./local.ts";
 * const src = localSource("tests/fixtures/llama-tiny");
 * const config = JSON.parse(new TextDecoder().decode(await src.read("config.json")));
 * ```
 */
export function localSource(root: string): FileSource {
  const folder = toLocalPath(root);
  return {
    location: folder,
    async read(file) {
      const fs = await localFs();
      const path = join(folder, file);
      try {
        return await fs.readFile(path);
      } catch (cause) {
        const code = (cause as { code?: string }).code;
        const why = code === "ENOENT" ? "no such file" : `cannot read (${code ?? String(cause)})`;
        throw new FileNotFoundError(`${why}: ${path}`, { file, cause });
      }
    },
    async exists(file) {
      const fs = await localFs();
      try {
        return (await fs.stat(join(folder, file))).isFile();
      } catch {
        return false;
      }
    },
  };
}

/**
 * Whether a local folder exists at this path.
 *
 * @example
 * ```ts
 * import { isLocalFolder } from "./local.ts";
 * await isLocalFolder("tests/fixtures/llama-tiny"); // true in this repo
 * ```
 */
export async function isLocalFolder(path: string): Promise<boolean> {
  try {
    return (await (await localFs()).stat(toLocalPath(path))).isDirectory();
  } catch {
    return false;
  }
}
