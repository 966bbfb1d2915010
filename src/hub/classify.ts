/**
 * Turns whatever a Hub request threw (an `@huggingface/hub` `HubApiError`, a
 * network `TypeError`, ...) into a {@linkcode HubError} whose message says
 * what happened and what to do, naming repo, revision and file but never
 * the token.
 * @module
 */
import { hub } from "../deps/hub.ts";
import { HubError, type HubErrorReason } from "../errors.ts";
import { TransportError } from "../storage/http.ts";
import type { SeenResponse } from "./observe.ts";

/**
 * Which request failed, and with what context.
 *
 * @example
 * ```ts
 * import type { FailureContext } from "./classify.ts";
 * const ctx: FailureContext = {
 *   repo: "org/a", revision: "main", file: "adapter_config.json", endpoint: "https://huggingface.co",
 *   withToken: false, stage: "file", seen: { status: 404, errorCode: "EntryNotFound" },
 * };
 * ```
 */
export interface FailureContext {
  repo: string;
  /** The revision the user asked for. */
  revision: string;
  /** Path in the repo (including the subfolder). */
  file: string;
  endpoint: string;
  /** Whether a token was sent (the token itself is never passed here). */
  withToken: boolean;
  /** `revision`: resolving the revision to a commit; `file`: a file request. */
  stage: "revision" | "file";
  /** What the observing fetch saw. */
  seen: SeenResponse;
}

/** Explains an HTTP status in words a user can act on. */
function explainStatus(status: number, code: string | undefined, serverSays: string, ctx: FailureContext) {
  const gated = code === "GatedRepo" || /gated|restricted|authorized list/i.test(serverSays);
  if (gated && (status === 401 || status === 403)) {
    return {
      reason: "gated" as const,
      text: `${status}: the repo is gated and ${
        ctx.withToken ? "this token has not been granted access" : "no token was given"
      }; request access at ${ctx.endpoint}/${ctx.repo} and pass a token (option \`token\` or HF_TOKEN)`,
    };
  }
  if (status === 401) {
    return {
      reason: "unauthorized" as const,
      text: ctx.withToken
        ? "401 Unauthorized: the token was not accepted for this repo (private, or the token lacks read access)"
        : "401 Unauthorized: the repo is private or does not exist and no token was given; pass option `token` or set HF_TOKEN",
    };
  }
  if (status === 403) return { reason: "forbidden" as const, text: "403 Forbidden: access to this repo was refused" };
  if (status === 404) {
    const what = code === "RepoNotFound"
      ? "repository not found"
      : code === "RevisionNotFound"
      ? "revision not found"
      : code === "EntryNotFound" || ctx.stage === "file"
      ? "file not found in the repo"
      : "repository or revision not found";
    return { reason: "not_found" as const, text: `404: ${what}` };
  }
  if (status >= 500) {
    return { reason: "server" as const, text: `${status}: the Hub server failed; try again later` };
  }
  return { reason: "server" as const, text: `unexpected HTTP status ${status}` };
}

/**
 * Builds the {@linkcode HubError} for a failed Hub request.
 *
 * @example
 * ```ts
 * import { hubFailure } from "./classify.ts";
 * const err = hubFailure(new TypeError("Connection refused"), {
 *   repo: "org/a", revision: "main", file: "adapter_config.json", endpoint: "http://127.0.0.1:1",
 *   withToken: false, stage: "file", seen: {},
 * });
 * console.log(err.reason); // "network"
 * ```
 */
export function hubFailure(error: unknown, ctx: FailureContext): HubError {
  if (error instanceof HubError) return error;
  const base = { repo: ctx.repo, revision: ctx.revision, file: ctx.file, cause: error };
  const message = error instanceof Error ? error.message : String(error);
  // HubApiError messages end with ". URL: <url>[. Request ID: <id>]"; the rest is the server's text.
  const serverSays = message.replace(/\.? ?URL: \S+(\. Request ID: \S+)?$/, "");
  const status = error instanceof hub.HubApiError ? error.statusCode : ctx.seen.status;
  if (status !== undefined) {
    const { reason, text } = explainStatus(status, ctx.seen.errorCode, serverSays, ctx);
    return new HubError(`${text} (server said: ${serverSays || "nothing"})`, { ...base, status, reason });
  }
  if (error instanceof hub.InvalidApiResponseFormatError) {
    return new HubError(`the server at ${ctx.endpoint} sent an invalid response: ${message}`, {
      ...base,
      reason: "server",
    });
  }
  const transport = error instanceof TransportError
    ? error
    : (error as { cause?: unknown })?.cause instanceof TransportError
    ? (error as { cause: TransportError }).cause
    : undefined;
  if (transport?.kind === "timeout") {
    return new HubError(`${ctx.endpoint} timed out (${transport.message}); check the network or raise timeoutMs`, {
      ...base,
      reason: "timeout",
    });
  }
  const reason: HubErrorReason = "network";
  const cause = (error as { cause?: unknown })?.cause;
  const detail = cause instanceof Error && cause.message && cause.message !== message
    ? `${message}: ${cause.message}`
    : message;
  return new HubError(`cannot reach ${ctx.endpoint} (${detail}); check the network or HF_ENDPOINT`, {
    ...base,
    reason,
  });
}
