/**
 * The runtime boundary for local files. `node:fs/promises` is implemented by
 * Deno, Bun and Node alike, so one adapter serves all three; it is imported
 * lazily so that browsers and edge runtimes never load it unless a local
 * path is actually used.
 * @module
 */
import { UnsupportedError } from "../errors.ts";

/**
 * A file opened for writing, chunk by chunk.
 *
 * @example
 * ```ts
 * import { localFs } from "./fs.ts";
 * const file = await (await localFs()).create("/tmp/new-file");
 * await file.write(new TextEncoder().encode("hello"));
 * await file.close();
 * ```
 */
export interface WritableFile {
  /** Appends bytes at the end of what was written so far. */
  write(bytes: Uint8Array): Promise<void>;
  /** Flushes and closes the file. */
  close(): Promise<void>;
}

/**
 * The subset of `node:fs/promises` peft-edge uses.
 *
 * @example
 * ```ts
 * import { localFs, type LocalFs } from "./fs.ts";
 * const fs: LocalFs = await localFs();
 * await fs.mkdirp("/tmp/a/b");
 * ```
 */
export interface LocalFs {
  readFile(path: string): Promise<Uint8Array>;
  stat(path: string): Promise<{ isFile(): boolean; isDirectory(): boolean; size: number }>;
  /** Like `stat` but does not follow a symbolic link. */
  lstat(path: string): Promise<{ isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }>;
  /** Creates a folder and its parents; no error when it exists. */
  mkdirp(path: string): Promise<void>;
  writeFile(path: string, bytes: Uint8Array | string): Promise<void>;
  /** Creates a new file for writing; fails if it exists. */
  create(path: string): Promise<WritableFile>;
  rename(from: string, to: string): Promise<void>;
  /** Creates `path` as a symbolic link whose content is `target`. */
  symlink(target: string, path: string): Promise<void>;
  readlink(path: string): Promise<string>;
  copyFile(from: string, to: string): Promise<void>;
  /** Removes a file or folder; no error when it does not exist. */
  rm(path: string, options?: { recursive?: boolean }): Promise<void>;
  readdir(path: string): Promise<string[]>;
  /** The canonical absolute path: every symbolic link and `..` resolved. */
  realpath(path: string): Promise<string>;
  /**
   * Fills `into` with the file's bytes from `offset`, synchronously (onnxruntime-web asks for weight bytes
   * from inside a synchronous call), and says which file that was; fails when the file is shorter. Absent
   * where the runtime has `node:fs/promises` but no synchronous `node:fs`.
   */
  readIntoSync?(path: string, offset: number, into: Uint8Array): FileIdentity;
  /** Which file is at `path` now. */
  identity(path: string): Promise<FileIdentity>;
}

/**
 * What tells one file from another that later took its path (an export written over it, a new download).
 *
 * @example
 * ```ts
 * import { localFs } from "./fs.ts";
 * const { size, mtimeMs, ino } = await (await localFs()).identity("deno.json");
 * ```
 */
export interface FileIdentity {
  size: number;
  mtimeMs: number;
  ino: number;
}

/**
 * Loads the local file system, or explains that this runtime has none
 * (an {@linkcode UnsupportedError}).
 *
 * @example
 * ```ts
 * import { localFs } from "./fs.ts";
 * const fs = await localFs();
 * const bytes = await fs.readFile("deno.json");
 * ```
 */
export async function localFs(): Promise<LocalFs> {
  let fs: typeof import("node:fs/promises");
  try {
    fs = await import("node:fs/promises");
  } catch (cause) {
    throw new UnsupportedError("this runtime has no local file system; pass a Hub repo id or an in-memory source", {
      key: "node:fs/promises",
      cause,
    });
  }
  const sync = await import("node:fs").catch(() => undefined);
  return {
    readFile: async (path) => {
      const bytes = await fs.readFile(path);
      // The Buffer's own memory when it has it alone (a model file: no second copy of its weights), else a copy.
      return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
        ? new Uint8Array(bytes.buffer)
        : new Uint8Array(bytes);
    },
    stat: (path) => fs.stat(path),
    lstat: (path) => fs.lstat(path),
    mkdirp: async (path) => {
      await fs.mkdir(path, { recursive: true });
    },
    writeFile: (path, bytes) => fs.writeFile(path, bytes),
    create: async (path) => {
      const handle = await fs.open(path, "wx");
      return {
        write: async (bytes) => {
          let done = 0;
          while (done < bytes.length) {
            done += (await handle.write(bytes, done, bytes.length - done)).bytesWritten;
          }
        },
        close: () => handle.close(),
      };
    },
    rename: (from, to) => fs.rename(from, to),
    symlink: (target, path) => fs.symlink(target, path),
    readlink: (path) => fs.readlink(path),
    copyFile: (from, to) => fs.copyFile(from, to),
    rm: (path, options) => fs.rm(path, { force: true, recursive: options?.recursive ?? false }),
    readdir: (path) => fs.readdir(path),
    realpath: (path) => fs.realpath(path),
    readIntoSync: sync && ((path, offset, into) => {
      const fd = sync.openSync(path, "r");
      try {
        const stat = sync.fstatSync(fd);
        for (let done = 0; done < into.length;) {
          const n = sync.readSync(fd, into, done, into.length - done, offset + done);
          if (n === 0) throw new RangeError(`${path} ends before byte ${offset + into.length}`);
          done += n;
        }
        return { size: stat.size, mtimeMs: stat.mtimeMs, ino: stat.ino };
      } finally {
        sync.closeSync(fd);
      }
    }),
    identity: async (path) => {
      const stat = await fs.stat(path);
      return { size: stat.size, mtimeMs: stat.mtimeMs, ino: stat.ino };
    },
  };
}
