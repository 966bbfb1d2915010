/**
 * Revision -> commit. A 40-hex revision is its own commit (no request);
 * offline, the cached `refs/<revision>` answers; online, `@huggingface/hub`'s
 * `modelInfo` asks the server and the answer is written to `refs/`. When the
 * server cannot be used (down, 401/403, 5xx) but the cache knows the
 * revision, the cached commit is used, as Python `huggingface_hub` does.
 * @module
 */
import { hub } from "../deps/hub.ts";
import { HubError } from "../errors.ts";
import type { HubCache } from "./cache.ts";
import { hubFailure } from "./classify.ts";
import type { RequestContext } from "./download.ts";
import { observedFetch, type SeenResponse } from "./observe.ts";
import { isCommitHash } from "./repo_id.ts";

/**
 * Why a revision could not be resolved; turned into a {@linkcode HubError}
 * for the file that was being read when the caller reports it.
 *
 * @example
 * ```ts
 * import { RevisionFailure } from "./revision.ts";
 * const f = new RevisionFailure(new TypeError("Connection refused"), {}, {
 *   repo: "org/a", revision: "main", endpoint: "http://127.0.0.1:1", fetch,
 * });
 * throw f.forFile("adapter_config.json");
 * ```
 */
export class RevisionFailure extends Error {
  constructor(
    readonly raw: unknown,
    readonly seen: SeenResponse,
    readonly ctx: RequestContext,
  ) {
    super(raw instanceof Error ? raw.message : String(raw));
  }

  /** The error to report while reading `path`; `note` is appended. */
  forFile(path: string, note?: string): HubError {
    const base = this.raw instanceof HubError ? this.raw : hubFailure(this.raw, {
      repo: this.ctx.repo,
      revision: this.ctx.revision,
      file: path,
      endpoint: this.ctx.endpoint,
      withToken: this.ctx.token !== undefined,
      stage: "revision",
      seen: this.seen,
    });
    const message = base.message.replace(/^.*?Hub repo \S+ at revision \S+: /, "");
    return new HubError(note ? `${message}; ${note}` : message, {
      repo: base.repo,
      revision: base.revision,
      file: path,
      status: base.status,
      reason: base.reason,
      cause: base.cause,
      detail: base.detail,
    });
  }
}

/**
 * A resolved commit; `networkError` is set when it came from the cache because the server failed.
 *
 * @example
 * ```ts
 * import type { Resolution } from "./revision.ts";
 * const pinned: Resolution = { commit: "0123456789abcdef0123456789abcdef01234567" };
 * ```
 */
export interface Resolution {
  commit: string;
  networkError?: RevisionFailure;
}

/**
 * Resolves the context's revision to a commit hash.
 *
 * @example
 * ```ts
 * import { resolveRevision } from "./revision.ts";
 * import { memoryHubCache } from "./cache.ts";
 * const { commit } = await resolveRevision(
 *   { repo: "org/a", revision: "main", endpoint: "https://huggingface.co", fetch },
 *   memoryHubCache(),
 *   false,
 * );
 * ```
 */
export async function resolveRevision(
  ctx: RequestContext,
  cache: HubCache,
  offline: boolean,
): Promise<Resolution> {
  if (isCommitHash(ctx.revision)) return { commit: ctx.revision };
  if (offline) {
    const commit = await cache.readRef(ctx.repo, ctx.revision);
    if (commit) return { commit };
    const why = new HubError(
      "offline mode (localFilesOnly or HF_HUB_OFFLINE=1) and the revision is not in the cache",
      { repo: ctx.repo, revision: ctx.revision, reason: "offline", detail: `cache ${cache.location}` },
    );
    throw new RevisionFailure(why, {}, ctx);
  }
  const probe = observedFetch(ctx.fetch);
  let sha: unknown;
  try {
    const info = await hub.modelInfo({
      name: ctx.repo,
      revision: ctx.revision,
      hubUrl: ctx.endpoint,
      accessToken: ctx.token,
      fetch: probe.fetch,
      additionalFields: ["sha"],
    });
    sha = info.sha;
    if (typeof sha !== "string" || !isCommitHash(sha)) {
      throw new hub.InvalidApiResponseFormatError(`no commit hash (sha) for revision ${ctx.revision}`);
    }
  } catch (error) {
    const failure = new RevisionFailure(error, probe.seen, ctx);
    const status = error instanceof hub.HubApiError ? error.statusCode : probe.seen.status;
    // A 404 is the server's final word; anything else may be transient.
    if (status !== 404) {
      const cached = await cache.readRef(ctx.repo, ctx.revision).catch(() => undefined);
      if (cached) return { commit: cached, networkError: failure };
    }
    throw failure;
  }
  await cache.writeRef(ctx.repo, ctx.revision, sha);
  return { commit: sha };
}
