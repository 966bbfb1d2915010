/**
 * Prompt-learning adapters beside any other engine. They are no weight
 * delta, so both modes treat them alike: prompt and P-tuning adapters share
 * one session of the base with a prompt input (made on the first such
 * adapter), prefix tuning runs the base's own session; the prompt or prefix
 * is a fed tensor, so loading or switching these adapters creates no
 * further session. Other adapters go to the wrapped engine.
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import { withPromptInput } from "../onnx/prompt_surgery.ts";
import { isPromptLearning } from "../tuners/prompt_learning/config.ts";
import { prefixPast } from "../tuners/prefix_tuning/mod.ts";
import type { LoadedAdapter } from "./adapter.ts";
import type { BaseModel } from "./base_model.ts";
import type { AdapterEngine, WeightedAdapter } from "./engine.ts";
import type { ModelSession } from "./model_session.ts";
import { PROMPT_EMBEDDINGS } from "./prompt_adapter.ts";
import { promptFeeds, type PromptValues } from "./prompt_feeds.ts";

interface PromptState {
  readonly prompts: ReadonlyMap<string, PromptValues>;
  /** The base with a prompt input, while a prompt or P-tuning adapter is loaded. */
  readonly session?: ModelSession;
}

function promptValues(adapter: LoadedAdapter): PromptValues {
  const config = adapter.config;
  if (!isPromptLearning(config)) throw new Error(`internal: ${adapter.name} is not a prompt-learning adapter`);
  const saved = adapter.weights.toFloat32(PROMPT_EMBEDDINGS);
  return config.peftType === "PREFIX_TUNING"
    ? { config, prefix: prefixPast(config, saved) }
    : { config, embeddings: saved };
}

const usesSession = (p: PromptValues) => p.embeddings !== undefined;

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
  state: PromptState = { prompts: new Map() },
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
      const session = usesSession(prompt) ? state.session! : base.session;
      return { session, feeds: {}, prepare: (feeds) => promptFeeds(feeds, prompt) };
    },
    async add(adapter) {
      if (!isPromptLearning(adapter.config)) return withPromptLearning(base, await inner.add(adapter), state);
      const prompt = promptValues(adapter);
      let session = state.session;
      if (usesSession(prompt) && !session) {
        const onnx = withPromptInput(base.onnx, base.file, prompt.config.tokenDim);
        session = await base.createSessionFromWeights(onnx);
      }
      return withPromptLearning(base, inner, { prompts: new Map([...state.prompts, [adapter.name, prompt]]), session });
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
      return {
        engine: withPromptLearning(base, inner, { prompts, session: keep ? state.session : undefined }),
        retired,
      };
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
