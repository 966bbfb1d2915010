/**
 * Dynamic mode's engine: the base graph rewritten once so each targeted
 * projection has a LoRA side branch whose A/B matrices are graph inputs,
 * then every run feeds the tensors of the adapters it uses (rank 0: off).
 * One session serves every adapter; switching adapters uploads only small
 * matrices. The graph is rewritten again only when a new adapter targets
 * modules it lacks. Trainable tokens get a branch of their own after the
 * embedding (and a tied head), fed the same way (`token_branches.ts`);
 * per-channel scales (IA³) multiply a module's input or output by a fed
 * vector (`scale_branches.ts`). Low-rank methods (AdaLoRA, VeRA) arrive as
 * LoRA patches and use the LoRA branches; dense-delta methods (LoHa, LoKr,
 * OFT, BOFT, FourierFT) as whole merged weights, fed like `modules_to_save`
 * (several of one method on one row: combined as PEFT's forward combines them, `dense_rows.ts`).
 * @module
 */
import type { ModelSession } from "./model_session.ts";
import {
  type ActiveAdapter,
  AdapterFeedCache,
  biasDeltas,
  biasModules,
  doraScales,
  loraPatches,
} from "../lora/dynamic_feeds.ts";
import type { AdapterTensorReader } from "../lora/readers.ts";
import type { LoraPatch } from "../lora/plan.ts";
import { type AdapterParams, adapterParams, paramSiteModules, paramSiteRequest } from "../lora/param_feeds.ts";
import { addLoraBranches } from "../onnx/lora_branches.ts";
import { addParamBranches, type ParamSite } from "../onnx/param_branches.ts";
import { addTokenBranches, type TokenBranch, type TokenSite } from "../onnx/token_branches.ts";
import { stackTokenRows, tokenFeeds, tokenSites } from "../lora/token_feeds.ts";
import { addScaleBranches, type ScaleRequest, type ScaleSite, scaleSiteKey } from "../onnx/scale_branches.ts";
import { adapterScales, scaleFeeds, type ScaleRowAdapter } from "../tuners/ia3/feeds.ts";
import { isTunerType } from "../tuners/methods.ts";
import { DenseRows } from "../tuners/dense_rows.ts";
import { externalBytes } from "../onnx/external_data.ts";
import { readTargetWeight } from "../onnx/quantized_weights.ts";
import { uploadToOrtGpu } from "../webgpu/ort_tensors.ts";
import { UnsupportedError } from "../errors.ts";
import type { LoadedAdapter } from "./adapter.ts";
import type { Feeds } from "./base_model.ts";
import type { BaseModel } from "./base_model.ts";
import type { AdapterEngine, Runnable, WeightedAdapter } from "./engine.ts";
import { aloraMask, isAlora } from "../lora/alora.ts";
import type { LoraConfig } from "../config/mod.ts";

/** The rewritten graph's session and what it has branches for. */
interface BranchGraph {
  session: ModelSession;
  modules: ReadonlySet<string>;
  dora: ReadonlySet<string>;
  /** Modules whose branch has a bias delta input (lora_bias, trained biases). */
  bias: ReadonlySet<string>;
  /** Parameter sites (`param_branches.ts`): norm bias deltas, and modules fed whole (modules_to_save). */
  deltas: ReadonlySet<string>;
  fed: ReadonlySet<string>;
  norms: ReadonlySet<string>;
  sites: ReadonlyMap<string, ParamSite>;
  feeds: AdapterFeedCache;
  /** Trainable-tokens branches, by module (the export's name), and the sites they were built for. */
  tokens: ReadonlyMap<string, TokenBranch>;
  tokenSites: ReadonlyMap<string, TokenSite>;
  /** Per-channel scale sites (`scale_branches.ts`) by site key, and the requests they were built for. */
  scaleSites: ReadonlyMap<string, ScaleSite>;
  scaleRequests: ReadonlyMap<string, ScaleRequest>;
  /** Each cached LoRA feed set with the token feeds of the same adapters added (kept while that set is cached). */
  withTokens: WeakMap<Feeds, Feeds>;
  /** On WebGPU: each cached feed set's tensors uploaded once, so switching adapters uploads nothing. */
  onGpu?: WeakMap<Feeds, Promise<Feeds>>;
  /** Modules whose delta is masked (an activated LoRA targets them), and the mask's input name. */
  masked: ReadonlySet<string>;
  mask?: string;
}

/**
 * Uploads the float tensors of a feed set to onnxruntime's GPU device: empty
 * ones (rank 0) stay, and so do int64 sizes (shared products' splits), which onnxruntime reads on the CPU.
 */
async function uploaded(feeds: Feeds): Promise<Feeds> {
  const onGpu = (t: Feeds[string]) => t.size > 0 && t.type !== "int64";
  const entries = await Promise.all(
    Object.entries(feeds).map(async ([name, t]) => [name, onGpu(t) ? await uploadToOrtGpu(t) : t] as const),
  );
  return Object.fromEntries(entries);
}

/** A loaded adapter with what dynamic runs need precomputed. */
interface Prepared {
  adapter: LoadedAdapter;
  tensor: AdapterTensorReader;
  doraScales: ReadonlyMap<string, Float32Array>;
  biasDeltas: ReadonlyMap<string, Float32Array>;
  params: AdapterParams;
  /** Per-channel scales by site key (IA³). */
  scales: ReadonlyMap<string, Float32Array>;
}

/** Options of {@linkcode dynamicEngine}. */
export interface DynamicEngineOptions {
  /** Modules to give branches up front (a server can prepare every linear module once). */
  prepareModules?: Iterable<string>;
}

async function buildGraph(
  base: BaseModel,
  modules: ReadonlySet<string>,
  dora: ReadonlySet<string>,
  bias: ReadonlySet<string>,
  deltas: ReadonlySet<string> = new Set(),
  fed: ReadonlySet<string> = new Set(),
  norms: ReadonlySet<string> = new Set(),
  tokenSites: ReadonlyMap<string, TokenSite> = new Map(),
  scaleRequests: ReadonlyMap<string, ScaleRequest> = new Map(),
  masked: ReadonlySet<string> = new Set(),
): Promise<BranchGraph> {
  const tokensOnFed = [...tokenSites.keys()].find((m) => fed.has(m));
  if (tokensOnFed !== undefined) {
    throw new UnsupportedError(
      "trainable tokens and a whole replacement (modules_to_save) of the same embedding cannot share one dynamic " +
        'graph: load them on separate models, or use mode "merged"',
      { key: tokensOnFed },
    );
  }
  const both = [...fed].find((m) => modules.has(m));
  if (both !== undefined) {
    throw new UnsupportedError(
      "one adapter replaces this module whole (modules_to_save, or a LoHa/LoKr/OFT/BOFT/FourierFT merged weight) " +
        "and another adds a LoRA (or AdaLoRA/VeRA) branch to it; one dynamic graph " +
        'cannot serve both: load them on separate models, or use mode "merged"',
      { key: both },
    );
  }
  const scaledFed = [...scaleRequests.values()].find((r) => fed.has(r.target.module));
  if (scaledFed !== undefined) {
    throw new UnsupportedError(
      "one adapter replaces this module whole (modules_to_save) and another scales it (IA3); one dynamic graph " +
        'cannot serve both: load them on separate models, or use mode "merged"',
      { key: scaledFed.target.module },
    );
  }
  // Per-row inputs: one session runs a single adapter set (rows dim 1) or mixed batches alike; q/k/v (and
  // gate/up) share one x @ A.
  const branched = addLoraBranches(base.onnx, base.weights, modules, {
    dora,
    bias,
    perRow: true,
    shareA: true,
    masked,
  });
  const params = deltas.size + fed.size + norms.size > 0
    ? addParamBranches(branched.model, base.weights, { deltas, fed, norms }, (name) => base.readWeight(name))
    : { model: branched.model, sites: new Map<string, ParamSite>() };
  const sites = params.sites;
  const withTokens = addTokenBranches(params.model, base.onnx, tokenSites.values());
  const tokens = withTokens.branches;
  const { model, sites: scaleSites } = scaleRequests.size > 0
    ? addScaleBranches(withTokens.model, base.onnx, scaleRequests.values())
    : { model: withTokens.model, sites: new Map<string, ScaleSite>() };
  // The base's own session goes first, so this one reuses its memory (onnxruntime's wasm heap never shrinks).
  await base.releaseOwnSession();
  const created = await base.createSessionFromWeights(model);
  const onGpu = base.device === "webgpu" ? new WeakMap<Feeds, Promise<Feeds>>() : undefined;
  // WebGPU cannot bind the empty tensors of a rank-0 (off) branch: off branches get rank 1 of zeros there.
  const feeds = new AdapterFeedCache(branched.branches, 32, sites, base.device === "webgpu" ? 1 : 0);
  let withdraw = () => {};
  // Released by the engine that owns it; the base stops running on it first.
  const session: ModelSession = {
    inputNames: created.inputNames,
    outputNames: created.outputNames,
    run: (f, o) => created.run(f, o),
    release: () => (withdraw(), created.release()),
  };
  const graph: BranchGraph = {
    session,
    modules,
    dora,
    bias,
    deltas,
    fed,
    norms,
    sites,
    feeds,
    tokens,
    tokenSites,
    scaleSites,
    scaleRequests,
    withTokens: new WeakMap(),
    onGpu,
    masked,
    mask: [...branched.branches.values()].find((b) => b.mask)?.mask,
  };
  // Every branch off is the base: the base runs here from now on, and its own session (weights copy) is gone.
  withdraw = base.routeThrough(offRunnable(base, graph));
  return graph;
}

/** The graph's runnable with no adapter (every branch at rank 0): the base itself. */
function offRunnable(base: BaseModel, g: BranchGraph): Runnable {
  const run = onGraph(
    g,
    addTokens(g, g.feeds.feeds([]), () => ({ ...tokenFeeds(g.tokens, []), ...scaleFeeds(g.scaleSites, [[]]) })),
  );
  const prepare = maskPrepare(base, g, [null]);
  return prepare ? { ...run, prepare } : run;
}

/** The graph's session with `feeds` (uploaded once per cached feed set on WebGPU). */
function onGraph(g: BranchGraph, feeds: Feeds): Runnable {
  if (!g.onGpu) return { session: g.session, feeds };
  let gpu = g.onGpu.get(feeds);
  if (!gpu) g.onGpu.set(feeds, gpu = uploaded(feeds));
  return { session: g.session, feeds: gpu };
}

/**
 * One row's adapters as PEFT runs them with an activated LoRA among them,
 * and the invocation whose offsets the row's mask takes. PEFT computes the
 * offsets of its `active_adapter` (here the row's first adapter) and gives
 * them to every aLoRA module; plain adapters are never masked. When the
 * first adapter is not an aLoRA, no offsets are computed and every aLoRA
 * adds nothing (`alora_offsets` None: the base only), so they are left out.
 */
function aloraRow(
  active: readonly WeightedAdapter[],
): { active: readonly WeightedAdapter[]; invocation: readonly number[] | null } {
  if (!active.some(({ adapter }) => isAlora(adapter.config) !== null)) return { active, invocation: null };
  const invocation = active.length > 0 ? isAlora(active[0].adapter.config) : null;
  if (invocation !== null) return { active, invocation };
  return { active: active.filter(({ adapter }) => isAlora(adapter.config) === null), invocation: null };
}

/** Adds the activated-LoRA mask of this run (when the graph has one) to the caller's feeds. */
function maskPrepare(
  base: BaseModel,
  g: BranchGraph,
  invocations: readonly (readonly number[] | null)[],
): Runnable["prepare"] {
  const mask = g.mask;
  // PEFT's generate keeps a KV cache unless the config turns it off (generation_config takes use_cache from it).
  const cached = base.config.use_cache !== false;
  if (mask === undefined) return undefined;
  return (feeds, promptIds) => {
    const ids = feeds.input_ids;
    if (!ids || ids.type !== "int64") {
      throw new UnsupportedError("activated LoRA finds its invocation in int64 input_ids, which this run lacks", {
        key: "input_ids",
      });
    }
    const attention = feeds.attention_mask?.type === "int64" ? feeds.attention_mask : undefined;
    return { ...feeds, [mask]: aloraMask(ids, invocations, promptIds, { attentionMask: attention, cached }) };
  };
}

/** `lora` (a cached LoRA feed set) plus the token and scale feeds of the same adapters, built once per set. */
function addTokens(g: BranchGraph, lora: Feeds, tokens: () => Feeds): Feeds {
  if (g.tokens.size === 0 && g.scaleSites.size === 0) return lora;
  let feeds = g.withTokens.get(lora);
  if (!feeds) g.withTokens.set(lora, feeds = { ...lora, ...tokens() });
  return feeds;
}

/**
 * Float32 adapter tensors, as the file gives them each time (F32 ones are views of its bytes in memory, or
 * read by range from a local file): nothing is kept here, the feed sets built from them are the one copy.
 */
function tensorReader(adapter: LoadedAdapter): AdapterTensorReader {
  return (key) => adapter.weights.float32View(key);
}

function engine(
  base: BaseModel,
  graph: BranchGraph | undefined,
  adapters: ReadonlyMap<string, Prepared>,
  dense: DenseRows = new DenseRows(base),
): AdapterEngine {
  // Dense-delta adapters sharing a module in one row are fed as one combined set (`dense_rows.ts`).
  const activeOf = (active: readonly WeightedAdapter[]): ActiveAdapter[] =>
    dense.row(active.map(({ adapter, weight }) => {
      const prepared = adapters.get(adapter.name)!;
      const { tensor, doraScales, biasDeltas, params } = prepared;
      const masked = isAlora(adapter.config) !== null;
      return { adapter, active: { plan: adapter.plan, tensor, weight, doraScales, biasDeltas, params, masked } };
    }));
  const scaleRow = (active: readonly WeightedAdapter[]): ScaleRowAdapter[] => {
    // PEFT's add_adapter: "Cannot combine adapters with different peft types" (every non-LoRA method alike).
    const types = new Set(active.map(({ adapter }) => adapter.config.peftType));
    if (types.size > 1 && [...types].some(isTunerType)) {
      throw new UnsupportedError(
        `Cannot combine adapters with different peft types (${[...types].join(", ")}) in one run, as PEFT says; ` +
          "run them on different rows (adapterNames) or one at a time",
        { key: "adapter" },
      );
    }
    if (types.has("LN_TUNING") && active.length > 1) {
      // LNTuningLayer.forward refuses any other active adapter, even one on other norms.
      throw new UnsupportedError(
        `Trying to run forward with ${active.length} active adapters, but LN tuning does not allow inference ` +
          "with more than one adapter at a time (as PEFT says)",
        { key: "adapter" },
      );
    }
    return active.map(({ adapter, weight }) => ({ scales: adapters.get(adapter.name)!.scales, weight }));
  };
  return {
    runnable(requested: readonly WeightedAdapter[]) {
      const { active, invocation } = aloraRow(requested);
      if (active.length === 0 || !graph) return { session: base.session, feeds: {} };
      const sets = activeOf(active);
      const scales = scaleRow(active);
      const prepare = maskPrepare(base, graph, [invocation]);
      const run = onGraph(
        graph,
        addTokens(
          graph,
          graph.feeds.feeds(sets),
          () => ({ ...tokenFeeds(graph.tokens, sets), ...scaleFeeds(graph.scaleSites, [scales]) }),
        ),
      );
      return prepare ? { ...run, prepare } : run;
    },
    rowsRunnable(requested: readonly (readonly WeightedAdapter[])[]) {
      const alora = requested.map(aloraRow);
      const rows = alora.map((r) => r.active);
      if (!graph || rows.every((r) => r.length === 0)) return { session: base.session, feeds: {} };
      const sets = rows.map(activeOf);
      const scales = rows.map(scaleRow);
      const tokens = () => ({
        ...stackTokenRows(graph.tokens, sets.map((set) => tokenFeeds(graph.tokens, set))),
        ...scaleFeeds(graph.scaleSites, scales),
      });
      const prepare = maskPrepare(base, graph, alora.map((r) => r.invocation));
      const run = onGraph(graph, addTokens(graph, graph.feeds.rowFeeds(sets), tokens));
      return prepare ? { ...run, prepare } : run;
    },
    async add(adapter: LoadedAdapter) {
      const patches = loraPatches(adapter.plan);
      const stack = patches.find((p) => p.target.experts !== undefined);
      if (stack) {
        // The export gathers one expert at a time from the whole stack: no side branch can follow that.
        throw new UnsupportedError(
          `LoRA on the 3-D expert parameter ${stack.module} (target_parameters) runs in mode "merged" only: the ` +
            "export reads the stack whole, one expert at a time, where no LoRA branch can be added",
          { key: stack.module },
        );
      }
      const { cpu } = await base.kernels();
      const tensor = tensorReader(adapter);
      const graphOf = (t: LoraPatch["target"]) =>
        readTargetWeight(base.onnx.graph!, t, base.file, (tp) => externalBytes(tp, base.externalData, base.file));
      // Norm biases and whole replaced modules go to parameter sites; other trained biases to branches.
      const request = paramSiteRequest(adapter.plan);
      const onSites = paramSiteModules(request);
      const biased = biasModules(adapter.plan).filter((m) => !onSites.has(m));
      const modules = new Set([...(graph?.modules ?? []), ...patches.map((p) => p.module), ...biased]);
      const dora = new Set([...(graph?.dora ?? []), ...patches.filter((p) => p.magnitude).map((p) => p.module)]);
      const bias = new Set([...(graph?.bias ?? []), ...biased]);
      const deltas = new Set([...(graph?.deltas ?? []), ...request.deltas]);
      const fed = new Set([...(graph?.fed ?? []), ...request.fed]);
      const norms = new Set([...(graph?.norms ?? []), ...request.norms]);
      const tokenSiteMap = new Map(graph?.tokenSites);
      for (const site of tokenSites(adapter.plan)) tokenSiteMap.set(site.target.module, site);
      const invocation = isAlora(adapter.config);
      if (invocation !== null && (adapter.config as LoraConfig).bias !== "none") {
        // The trained base biases are not masked in PEFT, the branch's bias delta would be.
        throw new UnsupportedError('activated LoRA with trained base biases (bias != "none") is not supported', {
          key: "bias",
        });
      }
      if (invocation !== null && (adapter.config as LoraConfig).loraBias) {
        // PEFT masks lora_B's bias with the rest of the delta; the branch's bias delta is added unmasked.
        throw new UnsupportedError("activated LoRA with lora_bias is not supported", { key: "lora_bias" });
      }
      const masked = new Set([...(graph?.masked ?? []), ...(invocation ? patches.map((p) => p.module) : [])]);
      const scaleRequests = new Map(graph?.scaleRequests);
      for (const s of adapter.plan.scales ?? []) {
        scaleRequests.set(scaleSiteKey(s.target.module, s.input), { target: s.target, input: s.input });
      }
      // A module fed whole loses a branch that only preparation (prepareModules) gave it.
      const used = new Set([...adapters.values(), { adapter }].flatMap(({ adapter: a }) => {
        const own = paramSiteModules(paramSiteRequest(a.plan));
        return [...loraPatches(a.plan).map((p) => p.module), ...biasModules(a.plan).filter((m) => !own.has(m))];
      }));
      for (const m of fed) {
        if (used.has(m)) continue;
        for (const set of [modules, dora, bias]) set.delete(m);
      }
      // A prepared branch named as the export names the module (`model.model.layers.0.q_proj`) gives way to an
      // adapter naming the same node otherwise (`model.layers.0.q_proj`): one node takes one branch.
      const nodeOf = (m: string) => (base.weights.get(m) ?? base.weights.resolve(m))?.nodeName;
      const usedNodes = new Set([...used].map(nodeOf));
      for (const m of [...modules]) {
        if (!used.has(m) && usedNodes.has(nodeOf(m))) { for (const set of [modules, dora, bias]) set.delete(m); }
      }
      const same = (a: ReadonlySet<string>, b: ReadonlySet<string>) =>
        a.size === b.size && [...a].every((m) => b.has(m));
      const covers = graph && same(modules, graph.modules) && same(dora, graph.dora) && same(bias, graph.bias) &&
        same(deltas, graph.deltas) && same(fed, graph.fed) && same(norms, graph.norms) &&
        same(new Set(tokenSiteMap.keys()), new Set(graph.tokenSites.keys())) && same(masked, graph.masked) &&
        same(new Set(scaleRequests.keys()), new Set(graph.scaleRequests.keys()));
      const next = covers
        ? graph
        : await buildGraph(base, modules, dora, bias, deltas, fed, norms, tokenSiteMap, scaleRequests, masked);
      // A bias the export lacks (dropped by the exporter as zero) is zero.
      const baseBias = (t: LoraPatch["target"]) =>
        t.bias ? base.readWeight(t.bias.initializer) : new Float32Array(t.outFeatures);
      let prepared: Prepared;
      try {
        prepared = {
          adapter,
          tensor,
          doraScales: doraScales(adapter.plan, graphOf, tensor, cpu),
          biasDeltas: biasDeltas(adapter.plan, baseBias, tensor),
          params: adapterParams(
            adapter.plan,
            next.sites,
            tensor,
            (name) => base.readWeight(name),
            adapter.config.fanInFanOut,
          ),
          scales: adapterScales(adapter.plan.scales ?? [], tensor),
        };
        // Validates the adapter against the branches and sites.
        const alone = [{
          plan: adapter.plan,
          tensor,
          doraScales: prepared.doraScales,
          biasDeltas: prepared.biasDeltas,
          params: prepared.params,
          masked: invocation !== null,
        }];
        next.feeds.feeds(alone);
        tokenFeeds(next.tokens, alone);
        scaleFeeds(next.scaleSites, [[{ scales: prepared.scales }]]);
      } catch (error) {
        if (next !== graph) await next.session.release();
        throw error;
      }
      return engine(base, next, new Map([...adapters, [adapter.name, prepared]]), next === graph ? dense : undefined);
    },
    remove(name: string) {
      const rest = new Map(adapters);
      const gone = rest.get(name);
      rest.delete(name);
      if (gone && graph) graph.feeds.forget(gone.adapter.plan);
      for (const plan of dense.forget(name)) graph?.feeds.forget(plan);
      return { engine: engine(base, graph, rest, dense), retired: [] };
    },
    sessions: () => (graph ? [graph.session] : []),
  };
}

/**
 * An engine that runs adapters unmerged beside the base weights (DoRA scales
 * computed with the base's kernels).
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "./base_model.ts";
 * import { readAdapter } from "./adapter.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const adapter = await readAdapter(base.weights, "tests/fixtures/llama-tiny-lora-qv", "qv");
 * import { dynamicEngine } from "./dynamic_engine.ts";
 * const engine = await (await dynamicEngine(base)).add(adapter);
 * const { session, feeds } = engine.runnable([{ adapter, weight: 1 }]);
 * ```
 */
export async function dynamicEngine(
  base: BaseModel,
  options: DynamicEngineOptions = {},
): Promise<AdapterEngine> {
  const modules = new Set(options.prepareModules ?? []);
  const graph = modules.size > 0 ? await buildGraph(base, modules, new Set(), new Set()) : undefined;
  return engine(base, graph, new Map());
}
