// Stands in for onnxruntime-node in browser and edge bundles (examples/browser/tsconfig.json): a native addon cannot
// load there. Importing it fails, so `device: "native"` raises DeviceUnavailableError instead of bundling the addon.
throw new Error("onnxruntime-node is a native addon; browsers and edge runtimes cannot load it");
