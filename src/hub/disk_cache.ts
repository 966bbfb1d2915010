/**
 * The on-disk {@linkcode HubCache}, laid out exactly like Python
 * `huggingface_hub`'s cache so both can share it:
 *
 * ```text
 * <cacheDir>/models--org--name/
 *   refs/main                     -> text file holding the commit hash
 *   blobs/<etag>                  -> file contents
 *   snapshots/<commit>/<path>     -> relative symlink to ../../blobs/<etag>
 *   .no_exist/<commit>/<path>     -> empty file: path absent at commit
 * <cacheDir>/.locks/models--org--name/<etag>.lock -> flock held while a blob is written
 * ```
 * @module
 */
import { lockFile } from "../runtime/file_lock.ts";
import { type LocalFs, localFs } from "../runtime/fs.ts";
import { localSource } from "../storage/local.ts";
import type { BlobWriter, HubCache } from "./cache.ts";
import { repoFolderName } from "./repo_id.ts";

/** The folder part of a `/`-separated path. */
function parentOf(path: string): string {
  const at = path.lastIndexOf("/");
  return at <= 0 ? (at === 0 ? "/" : ".") : path.slice(0, at);
}

/** Whether an fs error is "does not exist". */
function isMissingError(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  return code === "ENOENT" || code === "ENOTDIR";
}

/** A short random suffix so concurrent writers never share a temp file. */
function randomSuffix(): string {
  return crypto.getRandomValues(new Uint32Array(2)).join("");
}

/**
 * A {@linkcode HubCache} in a folder on disk, Python-compatible. Temp files
 * are `blobs/<etag>.<random>.incomplete`, renamed to `blobs/<etag>` only
 * when complete; where symlinks cannot be made, the blob is copied.
 *
 * @example
 * ```ts
 * import { diskHubCache } from "./disk_cache.ts";
 * const cache = diskHubCache("/tmp/hf-cache");
 * console.log(await cache.readRef("org/name", "main")); // commit or undefined
 * ```
 */
export function diskHubCache(cacheDir: string): HubCache {
  const root = cacheDir.replace(/\/+$/, "") || "/";
  const repoDir = (repo: string) => `${root}/${repoFolderName(repo)}`;
  const snapshotPath = (repo: string, commit: string, path: string) => `${repoDir(repo)}/snapshots/${commit}/${path}`;
  const blobPath = (repo: string, etag: string) => `${repoDir(repo)}/blobs/${etag}`;
  const noExistPath = (repo: string, commit: string, path: string) => `${repoDir(repo)}/.no_exist/${commit}/${path}`;

  const isFile = async (fs: LocalFs, path: string) => {
    try {
      return (await fs.stat(path)).isFile();
    } catch {
      return false;
    }
  };

  return {
    location: root,
    async readRef(repo, revision) {
      const fs = await localFs();
      try {
        const text = new TextDecoder().decode(await fs.readFile(`${repoDir(repo)}/refs/${revision}`)).trim();
        return text || undefined;
      } catch (error) {
        if (isMissingError(error)) return undefined;
        throw error;
      }
    },
    async writeRef(repo, revision, commit) {
      const fs = await localFs();
      const path = `${repoDir(repo)}/refs/${revision}`;
      await fs.mkdirp(parentOf(path));
      const temp = `${path}.${randomSuffix()}.incomplete`;
      await fs.writeFile(temp, commit);
      await fs.rename(temp, path);
    },
    async readFile(repo, commit, path) {
      const fs = await localFs();
      try {
        return await fs.readFile(snapshotPath(repo, commit, path));
      } catch (error) {
        if (isMissingError(error)) return undefined;
        throw error;
      }
    },
    // A snapshot folder read as a local folder: its files may resolve into the repo's blobs and nowhere else, and
    // ranged reads refuse a file changed since it was opened, naming it by its path in the repo. Only a snapshot
    // named by a commit may resolve into blobs there (the Hub's layout), so others are read whole as before.
    openRanges: (repo, commit, path) =>
      /^[0-9a-f]{40}$/.test(commit)
        ? localSource(`${repoDir(repo)}/snapshots/${commit}`).openRanges!(path)
        : Promise.resolve(undefined),
    async hasFile(repo, commit, path) {
      return isFile(await localFs(), snapshotPath(repo, commit, path));
    },
    async isMissing(repo, commit, path) {
      return isFile(await localFs(), noExistPath(repo, commit, path));
    },
    async markMissing(repo, commit, path) {
      const fs = await localFs();
      const marker = noExistPath(repo, commit, path);
      await fs.mkdirp(parentOf(marker));
      await fs.writeFile(marker, "");
    },
    async hasBlob(repo, etag) {
      return isFile(await localFs(), blobPath(repo, etag));
    },
    async writeBlob(repo, etag): Promise<BlobWriter> {
      const fs = await localFs();
      const final = blobPath(repo, etag);
      await fs.mkdirp(parentOf(final));
      const temp = `${final}.${randomSuffix()}.incomplete`;
      const file = await fs.create(temp);
      let open = true;
      const close = async () => {
        if (open) {
          open = false;
          await file.close();
        }
      };
      return {
        write: (chunk) => file.write(chunk),
        async commit() {
          await close();
          await fs.rename(temp, final);
        },
        async abort() {
          try {
            await close();
          } finally {
            await fs.rm(temp);
          }
        },
      };
    },
    async blobOf(repo, commit, path) {
      const fs = await localFs();
      try {
        const target = await fs.readlink(snapshotPath(repo, commit, path));
        const name = target.slice(target.lastIndexOf("/") + 1);
        return target.endsWith(`blobs/${name}`) ? name : undefined;
      } catch {
        return undefined; // missing, or a copy (no symlinks here): no blob name to check against
      }
    },
    async discard(repo, commit, path, etag) {
      const fs = await localFs();
      await fs.rm(blobPath(repo, etag));
      await fs.rm(snapshotPath(repo, commit, path));
    },
    lock: (repo, etag) => lockFile(`${root}/.locks/${repoFolderName(repo)}/${etag}.lock`),
    async link(repo, commit, path, etag) {
      const fs = await localFs();
      const pointer = snapshotPath(repo, commit, path);
      await fs.mkdirp(parentOf(pointer));
      // snapshots/<commit>/<a/b/file> -> ../../(../)blobs/<etag>, as Python writes it.
      const depth = 2 + path.split("/").length - 1;
      const target = `${"../".repeat(depth)}blobs/${etag}`;
      await fs.rm(pointer);
      try {
        await fs.symlink(target, pointer);
      } catch (error) {
        if ((error as { code?: string }).code === "EEXIST") return;
        // No symlinks here (Windows without developer mode): copy, as Python does.
        const temp = `${pointer}.${randomSuffix()}.incomplete`;
        await fs.copyFile(blobPath(repo, etag), temp);
        await fs.rename(temp, pointer);
      }
    },
  };
}
