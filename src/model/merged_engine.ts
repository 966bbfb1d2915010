/**
 * Merged mode's engine: each adapter merged into its own session. Exact and
 * as fast to run as the base, at the cost of a full weight copy per adapter.
 * @module
 */
import type { ModelSession } from "./model_session.ts";
import { UnsupportedError } from "../errors.ts";
import type { WeightMerger } from "../lora/merger.ts";
import type { LoadedAdapter } from "./adapter.ts";
import type { BaseModel } from "./base_model.ts";
import type { ActiveAdapter, AdapterEngine } from "./engine.ts";
import { mergeAdapters } from "./merged.ts";
import { createSession } from "./session.ts";

/**
 * An engine with one merged session per adapter.
 *
 * @example
 * ```ts
 * import { mergedEngine } from "./merged_engine.ts";
 * // const engine = await mergedEngine(base, cpuMerger(await loadKernels())).add(adapter);
 * // const { session } = engine.runnable([{ adapter, weight: 1 }]);
 * ```
 */
export function mergedEngine(
  base: BaseModel,
  merger: WeightMerger,
  sessions: ReadonlyMap<string, ModelSession> = new Map(),
): AdapterEngine {
  return {
    runnable(active: readonly ActiveAdapter[]) {
      if (active.length === 0) return { session: base.session, feeds: {} };
      if (active.length > 1 || active[0].weight !== 1) {
        throw new UnsupportedError(
          'several (or weighted) active adapters need mode "dynamic"; in merged mode each adapter has its own session',
          { key: "adapter" },
        );
      }
      const session = sessions.get(active[0].adapter.name);
      if (!session) throw new UnsupportedError(`adapter ${active[0].adapter.name} has no session`, { key: "adapter" });
      return { session, feeds: {} };
    },
    async add(adapter: LoadedAdapter) {
      const onnx = await mergeAdapters(base, [{ adapter }], merger);
      const session = await createSession(onnx, base.externalData, base.settings, base.file);
      return mergedEngine(base, merger, new Map([...sessions, [adapter.name, session]]));
    },
    remove(name: string) {
      const rest = new Map(sessions);
      const retired = rest.get(name);
      rest.delete(name);
      return { engine: mergedEngine(base, merger, rest), retired: retired ? [retired] : [] };
    },
    sessions: () => [...sessions.values()],
  };
}
