/**
 * Prompt-learning adapters beside any other engine. They are no weight
 * delta, so both modes treat them alike: prompt and P-tuning adapters share
 * one session of the base with a prompt input (made on the first such
 * adapter), prefix tuning runs the base's own session; the prompt or prefix
 * is a fed tensor, so loading or switching these adapters creates no
 * further session. A `SEQ_CLS` adapter's saved classifier (`modules_to_save`)
 * is fed whole to that session too (`param_branches.ts`), which is made
 * again only when an adapter saves a module it does not feed yet. Other
 * adapters go to the wrapped engine.
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import { UnsupportedError } from "../errors.ts";
import { adapterParams, paramFeeds, paramSiteRequest } from "../lora/param_feeds.ts";
import { addParamBranches, type ParamSite } from "../onnx/param_branches.ts";
import { findTokenEmbedding, poolsByTokenIds, PROMPT_INPUT, withPromptInput } from "../onnx/prompt_surgery.ts";
import { isPromptLearning } from "../tuners/prompt_learning/config.ts";
import { prefixPast } from "../tuners/prefix_tuning/mod.ts";
import type { LoadedAdapter } from "./adapter.ts";
import type { BaseModel } from "./base_model.ts";
import type { Feeds } from "./base_model.ts";
import type { AdapterEngine, WeightedAdapter } from "./engine.ts";
import type { ModelSession } from "./model_session.ts";
import { PROMPT_EMBEDDINGS } from "./prompt_adapter.ts";
import { promptFeeds, type PromptValues } from "./prompt_feeds.ts";

/** A loaded prompt-learning adapter: its prompt, and its feeds of the session's parameter sites. */
interface LoadedPrompt {
  readonly adapter: LoadedAdapter;
  readonly values: PromptValues;
  /** The saved modules' parameters (the base's where it saves none) for the session's sites. */
  readonly sites: Feeds;
}

interface PromptState {
  readonly prompts: ReadonlyMap<string, LoadedPrompt>;
  /** The base with a prompt input, while a prompt or P-tuning adapter or a saved module is loaded. */
  readonly session?: ModelSession;
  /** Modules the session feeds whole (saved classifiers), and their sites. */
  readonly fed: ReadonlySet<string>;
  readonly sites: ReadonlyMap<string, ParamSite>;
  /** The width of the session's prompt input. */
  readonly hidden?: number;
}

/** The width of the prompt input: the prompt's, else (a prefix adapter) the base's token embeddings'. */
function promptWidth(base: BaseModel, values: PromptValues): number {
  if (values.embeddings) return values.config.tokenDim;
  return findTokenEmbedding(base.onnx.graph!, base.file).hidden ?? Number(base.config.hidden_size);
}

/** A prefix run on the prompted session (it feeds a saved module) gives no prompt: an empty one. */
function withEmptyPrompt(feeds: Feeds, hidden: number): Feeds {
  if (feeds[PROMPT_INPUT]) return feeds;
  const rows = feeds.input_ids?.dims[0] ?? 1;
  return { ...feeds, [PROMPT_INPUT]: new Tensor("float32", new Float32Array(0), [rows, 0, hidden]) };
}

function promptValues(base: BaseModel, adapter: LoadedAdapter): PromptValues {
  const config = adapter.config;
  if (!isPromptLearning(config)) throw new Error(`internal: ${adapter.name} is not a prompt-learning adapter`);
  const saved = adapter.weights.toFloat32(PROMPT_EMBEDDINGS);
  if (config.peftType === "PREFIX_TUNING") return { config, prefix: prefixPast(config, saved) };
  // A decoder classifier's export pools the last non-pad token, PEFT (inputs_embeds) the last position.
  const pooled = config.taskType === "SEQ_CLS" && poolsByTokenIds(base.onnx.graph!);
  return { config, embeddings: saved, ...(pooled ? { lastTokenNotPad: Number(base.config.pad_token_id) } : {}) };
}

/** The modules an adapter saves whole (a `SEQ_CLS` classifier). */
function savedModules(adapter: LoadedAdapter): string[] {
  const { fed } = paramSiteRequest(adapter.plan);
  const biasOnly = adapter.plan.patches.find((p) => p.kind === "replace" && !fed.includes(p.module));
  if (biasOnly) {
    throw new UnsupportedError(
      `a saved ${biasOnly.module} (modules_to_save) is supported for prompt learning as a linear or embedding ` +
        "module saved with its weight",
      { key: biasOnly.module },
    );
  }
  return fed;
}

const usesSession = (p: LoadedPrompt) => p.values.embeddings !== undefined || p.adapter.plan.patches.length > 0;

/** The feeds of every site for an adapter: its saved modules, the base's parameters for the others. */
function siteFeeds(base: BaseModel, adapter: LoadedAdapter, sites: ReadonlyMap<string, ParamSite>): Feeds {
  if (sites.size === 0) return {};
  const tensor = (key: string) => adapter.weights.toFloat32(key);
  const params = adapterParams(adapter.plan, sites, tensor, (name) => base.readWeight(name), false);
  return paramFeeds(sites, [[{ params }]]);
}

/**
 * An engine that runs prompt-learning adapters itself and every other
 * adapter with `inner`. A prompt-learning adapter runs alone (PEFT has one
 * active prompt-learning adapter and no mixed-adapter batches for them).
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "./base_model.ts";
 * import { mergedEngine } from "./merged.ts";
 * import { withPromptLearning } from "./prompt_engine.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const engine = withPromptLearning(base, mergedEngine(base));
 * ```
 */
export function withPromptLearning(
  base: BaseModel,
  inner: AdapterEngine,
  state: PromptState = { prompts: new Map(), fed: new Set(), sites: new Map() },
): AdapterEngine {
  const isPrompt = (w: WeightedAdapter) => state.prompts.has(w.adapter.name);
  const engine: AdapterEngine = {
    runnable(active) {
      if (!active.some(isPrompt)) return inner.runnable(active);
      if (active.length !== 1 || active[0].weight !== 1) {
        const name = active.find(isPrompt)!.adapter.name;
        throw new UnsupportedError(
          `prompt-learning adapter ${name} runs alone and with weight 1 (PEFT has one active prompt-learning adapter)`,
          { key: "adapter" },
        );
      }
      const prompt = state.prompts.get(active[0].adapter.name)!;
      if (!usesSession(prompt)) {
        return { session: base.session, feeds: {}, prepare: (feeds) => promptFeeds(feeds, prompt.values) };
      }
      return {
        session: state.session!,
        feeds: prompt.sites,
        prepare: (feeds) => withEmptyPrompt(promptFeeds(feeds, prompt.values), state.hidden!),
      };
    },
    async add(adapter) {
      if (!isPromptLearning(adapter.config)) return withPromptLearning(base, await inner.add(adapter), state);
      const values = promptValues(base, adapter);
      const fed = new Set([...state.fed, ...savedModules(adapter)]);
      const added: LoadedPrompt = { adapter, values, sites: {} };
      let { session, sites, hidden } = state;
      let prompts = new Map([...state.prompts, [adapter.name, added]]);
      if (usesSession(added) && (!session || fed.size > state.fed.size)) {
        // The prompt input and, for saved modules, their parameters as inputs (the base's when an adapter has none).
        hidden = promptWidth(base, values);
        const prompted = withPromptInput(base.onnx, base.file, hidden);
        const built = fed.size > 0
          ? addParamBranches(prompted, base.weights, { deltas: [], fed }, (name) => base.readWeight(name))
          : { model: prompted, sites: new Map<string, ParamSite>() };
        session = await base.createSessionFromWeights(built.model);
        sites = built.sites;
        // Every adapter's site feeds are against the new sites.
        prompts = new Map([...prompts].map(([name, p]) => [name, { ...p, sites: siteFeeds(base, p.adapter, sites) }]));
      } else {
        prompts.set(adapter.name, { ...added, sites: siteFeeds(base, adapter, sites) });
      }
      return withPromptLearning(base, inner, { prompts, session, fed, sites, hidden });
    },
    remove(name) {
      if (!state.prompts.has(name)) {
        const { engine: next, retired } = inner.remove(name);
        return { engine: withPromptLearning(base, next, state), retired };
      }
      const prompts = new Map(state.prompts);
      prompts.delete(name);
      const keep = [...prompts.values()].some(usesSession);
      const retired = !keep && state.session ? [state.session] : [];
      const rest: PromptState = keep ? { ...state, prompts } : { prompts, fed: new Set(), sites: new Map() };
      return { engine: withPromptLearning(base, inner, rest), retired };
    },
    sessions: () => [...inner.sessions(), ...(state.session ? [state.session] : [])],
  };
  const rows = inner.rowsRunnable;
  if (rows) {
    engine.rowsRunnable = (sets) => {
      const prompt = sets.flat().find(isPrompt);
      if (prompt) {
        throw new UnsupportedError(
          `prompt-learning adapter ${prompt.adapter.name} cannot share a mixed-adapter batch (its rows are longer)`,
          { key: "adapterNames" },
        );
      }
      return rows.call(inner, sets);
    };
  }
  return engine;
}
