/**
 * onnxruntime-web, pinned. Every other module imports ORT from here so the
 * version lives in one place and URL importers need no import map.
 * @module
 */
export * as ort from "npm:onnxruntime-web@1.30.0";
export { Tensor } from "npm:onnxruntime-web@1.30.0";
export type { InferenceSession } from "npm:onnxruntime-web@1.30.0";
