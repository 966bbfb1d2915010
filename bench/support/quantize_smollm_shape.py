"""The q4 (and q8) variants of the base that make_smollm_shape.py writes, made as onnx-community's q4/quantized
exports are: onnxruntime's MatMulNBitsQuantizer (4 bits, block 32, symmetric) and quantize_dynamic. For benches only:

    /path/to/venv/bin/python bench/support/quantize_smollm_shape.py OUT_DIR [q4] [q8]

writes OUT_DIR/base/onnx/model_q4.onnx and/or model_quantized.onnx (default: q4 only).
"""

import os
import sys

import onnx
from onnxruntime.quantization import quantize_dynamic
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer


def main(out, kinds):
    onnx_dir = os.path.join(out, "base", "onnx")
    src = os.path.join(onnx_dir, "model.onnx")
    if "q4" in kinds:
        q = MatMulNBitsQuantizer(onnx.load(src), block_size=32, is_symmetric=True)
        q.process()
        q.model.save_model_to_file(os.path.join(onnx_dir, "model_q4.onnx"))
    if "q8" in kinds:
        quantize_dynamic(src, os.path.join(onnx_dir, "model_quantized.onnx"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["q4"])
