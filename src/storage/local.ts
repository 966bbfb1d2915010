/**
 * A {@linkcode FileSource} over a local folder.
 * @module
 */
import { FileAccessError, FileNotFoundError } from "../errors.ts";
import { type FileIdentity, type LocalFs, localFs } from "../runtime/fs.ts";
import { insideFolder } from "./paths.ts";
import type { FileSource, RangeFile } from "./file_source.ts";

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

/** The last segment of a folder path: enough to say which folder, never where it is. */
function folderName(folder: string): string {
  return folder.replace(/[\\/]+$/, "").split(/[\\/]/).pop() || folder;
}

/** Whether canonical `path` is `root` or below it. */
function isBelow(path: string, root: string): boolean {
  const sep = root.includes("\\") && !root.includes("/") ? "\\" : "/";
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * Where files of a canonical folder may resolve to: the folder itself and,
 * for a snapshot of a Hugging Face cache (`models--org--name/snapshots/<commit>`,
 * whose files are symbolic links to `../../blobs/<etag>`), that repo's `blobs`.
 */
function allowedRoots(real: string): string[] {
  const snapshot = real.match(/^(.*[\\/]models--[^\\/]+)[\\/]snapshots[\\/][0-9a-f]{40}(?:[\\/].*)?$/);
  return snapshot ? [real, `${snapshot[1]}/blobs`] : [real];
}

/**
 * Reads files below a local folder. Every file is resolved with `realpath`
 * and must stay inside the folder: a name with `..` or a symbolic link
 * (file or folder) pointing outside is refused with a
 * {@linkcode FileAccessError}, before any byte is read. Messages name the
 * file relative to the folder and the folder's last segment only; the
 * absolute paths are in the error's `detail` (for server logs).
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
  const shown = folderName(folder);
  let roots: Promise<string[]> | undefined;
  const allowed = (fs: LocalFs): Promise<string[]> => {
    if (roots) return roots;
    const attempt = fs.realpath(folder).then(allowedRoots);
    roots = attempt;
    attempt.catch(() => {
      if (roots === attempt) roots = undefined;
    });
    return attempt;
  };
  /** The canonical path of `file`, checked to be inside the folder. */
  const resolve = async (fs: LocalFs, file: string): Promise<string> => {
    const name = insideFolder(file);
    if (name === undefined) {
      throw new FileAccessError("the file name leaves the folder; not read", { file, detail: `folder ${folder}` });
    }
    const path = join(folder, name);
    let inside: string[];
    let real: string;
    try {
      inside = await allowed(fs);
      real = await fs.realpath(path);
    } catch (cause) {
      throw notReadable(file, path, cause);
    }
    if (!inside.some((r) => isBelow(real, r))) {
      throw new FileAccessError(`resolves to a place outside the folder ${shown} (a symbolic link?); not read`, {
        file,
        detail: `${path} -> ${real}`,
      });
    }
    return real;
  };
  const notReadable = (file: string, path: string, cause: unknown): FileNotFoundError => {
    const code = (cause as { code?: string }).code;
    const why = code === "ENOENT" || code === "ENOTDIR" ? "no such file" : `cannot read (${code ?? "error"})`;
    return new FileNotFoundError(`${why} in the folder ${shown}`, {
      file,
      cause,
      detail: `${path}: ${cause instanceof Error ? cause.message : String(cause)}`,
    });
  };
  return {
    location: folder,
    async read(file) {
      const fs = await localFs();
      const real = await resolve(fs, file);
      try {
        return await fs.readFile(real);
      } catch (cause) {
        throw notReadable(file, real, cause);
      }
    },
    async openRanges(file): Promise<RangeFile | undefined> {
      const fs = await localFs();
      const readIntoSync = fs.readIntoSync;
      if (!readIntoSync) return undefined;
      const real = await resolve(fs, file);
      const failed = (cause: unknown): never => {
        throw notReadable(file, real, cause);
      };
      const opened = await fs.identity(real).catch(failed);
      const same = (now: FileIdentity) => {
        if (now.size === opened.size && now.mtimeMs === opened.mtimeMs && now.ino === opened.ino) return;
        throw new FileAccessError("changed since it was opened (rewritten or replaced); not read", {
          file,
          detail: `${real}: ${JSON.stringify(opened)} -> ${JSON.stringify(now)}`,
        });
      };
      return {
        size: opened.size,
        readInto(offset, into) {
          let now: FileIdentity;
          try {
            now = readIntoSync(real, offset, into);
          } catch (cause) {
            return failed(cause);
          }
          same(now);
        },
        async readAll() {
          const bytes = await fs.readFile(real).catch(failed);
          same(await fs.identity(real).catch(failed));
          return bytes;
        },
      };
    },
    async exists(file) {
      const fs = await localFs();
      try {
        return (await fs.stat(await resolve(fs, file))).isFile();
      } catch (error) {
        // A file that resolves outside is not "missing": say so when it is read.
        if (error instanceof FileAccessError) return true;
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
