/**
 * What each non-LoRA method tells the loader: its config parser, the tensor
 * names it saves per module, and its merge math (the new dense weight of a
 * module, from the base weight and the saved tensors, in float32).
 * @module
 */
import type { TunerConfig } from "./config.ts";

/** A saved tensor, upcast to float32. */
export interface SavedTensor {
  values: Float32Array;
  shape: readonly number[];
}

/**
 * One targeted module as a method's merge sees it. Weights are in PyTorch's
 * `nn.Linear` layout, `[out, in]`, whatever the ONNX layout.
 *
 * @example
 * ```ts
 * import type { ModuleUpdate } from "./method.ts";
 * const rows = (m: ModuleUpdate) => m.outFeatures;
 * ```
 */
export interface ModuleUpdate {
  /** Module name as PEFT saves it (`model.layers.0.self_attn.q_proj`). */
  module: string;
  outFeatures: number;
  inFeatures: number;
  /** A per-module tensor by its PEFT name (`hada_w1_a`), when saved. */
  tensor(param: string): SavedTensor | undefined;
  /** A tensor the method saves once for all modules (`vera_A`), when saved. */
  shared(name: string): SavedTensor | undefined;
  /** A fresh copy of the base weight, `[out, in]`. */
  weight(): Float32Array;
  /** A fresh copy of the base bias, when the module has one. */
  bias(): Float32Array | undefined;
}

/**
 * A module's per-channel scale (see {@linkcode TunerMethod.scale}).
 *
 * @example
 * ```ts
 * import type { ChannelScale } from "./method.ts";
 * const features = (s: ChannelScale) => s.values.length;
 * ```
 */
export interface ChannelScale {
  /** The saved tensor it comes from (`ia3_l`). */
  param: string;
  /** `[in]` when `input`, else `[out]`. */
  values: Float32Array;
  /** Whether the module's input is scaled (else its output, bias included). */
  input: boolean;
}

/**
 * A module's delta as a LoRA pair, `ΔW = scale · B @ A` (see {@linkcode TunerMethod.lowRank}).
 *
 * @example
 * ```ts
 * import type { LowRankDelta } from "./method.ts";
 * const entries = (d: LowRankDelta) => d.a.length + d.b.length;
 * ```
 */
export interface LowRankDelta {
  rank: number;
  /** `[rank, in]`. */
  a: Float32Array;
  /** `[out, rank]`. */
  b: Float32Array;
  scale: number;
}

/** The new parameters of one module; absent ones stay as in the base. */
export interface ModuleResult {
  weight?: Float32Array;
  bias?: Float32Array;
}

/**
 * A PEFT method peft-edge merges.
 *
 * @example
 * ```ts
 * import type { TunerMethod } from "./method.ts";
 * const saves = (m: TunerMethod) => m.params.join(", ");
 * ```
 */
export interface TunerMethod {
  /** Per-module tensor names, as in `<module>.<param>` keys. */
  readonly params: readonly string[];
  /** Tensors saved once under `base_model.<name>`. */
  readonly shared?: readonly string[];
  /** Set where the shared tensors are buffers in PEFT (VeRA's projections), so not counted as parameters. */
  readonly sharedAreBuffers?: true;
  /** Parameters PEFT's layer has per module beside its saved tensors (AdaLoRA's `ranknum`). */
  readonly unsavedPerModule?: number;
  /** PEFT's message when it refuses transformers' `Conv1D` (GPT-2) for this method; unset where it adapts it. */
  readonly conv1DRefusal?: string;
  /**
   * Set for methods whose tensors replace a module's own parameters (LN
   * tuning): saved name -> parameter (`weight`, `bias`). `merge` is then unused.
   */
  readonly replaces?: Readonly<Record<string, "weight" | "bias">>;
  /**
   * Set for methods that are a per-channel scale of a module's input or
   * output (IA³): the checked vector of one module and which side it scales.
   * Dynamic mode feeds it per run (`scale_branches.ts`); `merge` folds it into the weight.
   */
  scale?(m: ModuleUpdate, config: TunerConfig): ChannelScale;
  /**
   * Set for methods whose delta is low-rank (AdaLoRA, VeRA): the module's
   * delta as a LoRA pair, `undefined` for a rank pruned to 0. Dynamic mode
   * runs it as a LoRA branch; `merge` adds it to the weight.
   */
  lowRank?(m: ModuleUpdate, config: TunerConfig): LowRankDelta | undefined;
  /**
   * Set where PEFT's forward with several active adapters equals merging them in the reverse order (OFT:
   * each rotates the input in turn, `x R_a R_b W^T`, while merging a then b gives `x R_b R_a W^T`). Unset:
   * the forward equals merging them in order (deltas add; BOFT multiplies its rotations the merge's way).
   */
  readonly forwardReversed?: true;
  parse(values: Readonly<Record<string, unknown>>, file?: string): TunerConfig;
  /** Checks, for the whole adapter, before any module is merged (e.g. shared tensors present). */
  check?(config: TunerConfig, shared: (name: string) => SavedTensor | undefined): void;
  merge(m: ModuleUpdate, config: TunerConfig): ModuleResult;
}
