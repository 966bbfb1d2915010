/**
 * PEFT's rule for trainable tokens beside LoRA across adapters: one module
 * of a model is either a LoRA layer or a `TrainableTokensWrapper`, whatever
 * adapter brought which. Loading an adapter with tokens on a module another
 * adapter adapts with LoRA raises TypeError in PEFT (`check_module`: "cannot
 * be applied to modules of type lora.Embedding"); loading a LoRA on a module
 * that carries tokens raises ValueError (the wrapper is not a module type
 * LoRA supports). The same pair in one config is `plan.ts`'s check.
 * @module
 */
import { AdapterConfigError } from "../errors.ts";
import type { AdapterPlan } from "./plan.ts";

/** An adapter as this check reads it. */
interface Planned {
  name: string;
  plan: AdapterPlan;
}

const loraModules = (plan: AdapterPlan) =>
  new Set(plan.patches.flatMap((p) => (p.kind === "lora" ? [p.target.module] : [])));
const tokenModules = (plan: AdapterPlan) => new Set(plan.tokens.map((p) => p.target.module));

/**
 * Throws PEFT's verdict when `incoming` and an already loaded adapter put a
 * LoRA and trainable tokens on the same module (either way round).
 *
 * @throws {AdapterConfigError} naming the module and both adapters.
 * @example
 * ```ts
 * import { checkTokensBesideLora } from "./token_rules.ts";
 * const plan = { patches: [], unmatchedKeys: [], missingModules: [], missingKeys: [], tokens: [] };
 * checkTokensBesideLora([{ name: "a", plan }], { name: "b", plan }); // no conflict: returns
 * ```
 */
export function checkTokensBesideLora(loaded: Iterable<Planned>, incoming: Planned): void {
  const [inLora, inTokens] = [loraModules(incoming.plan), tokenModules(incoming.plan)];
  for (const other of loaded) {
    const tokensOnLora = [...inTokens].find((m) => loraModules(other.plan).has(m));
    if (tokensOnLora !== undefined) {
      throw new AdapterConfigError(
        `adapter ${incoming.name} has trainable tokens on ${tokensOnLora}, which adapter ${other.name} adapts ` +
          "with LoRA; PEFT raises TypeError: trainable_token_indices cannot be applied to modules of type " +
          "lora.Embedding (one module of a model takes either)",
        { key: "trainable_token_indices" },
      );
    }
    const loraOnTokens = [...inLora].find((m) => tokenModules(other.plan).has(m));
    if (loraOnTokens !== undefined) {
      throw new AdapterConfigError(
        `adapter ${incoming.name} has a LoRA on ${loraOnTokens}, which carries adapter ${other.name}'s trainable ` +
          "tokens; PEFT raises ValueError: target module TrainableTokensWrapper is not supported (one module of a " +
          "model takes either)",
        { key: "target_modules" },
      );
    }
  }
}
