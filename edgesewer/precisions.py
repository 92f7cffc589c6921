"""The artifact precisions, in one place: the exporter writes them, the sidecar records one, the runtime
and the benchmark read them. The order is the one reports list them in (reference first).

    fp32       the reference graph
    fp16       FP16 weights and activations, FP32 I/O, norms, softmax and head
    int8       Q/DQ graph for TensorRT (also runs in ONNX Runtime)
    int8-fp16  the Q/DQ graph with FP16 between the quantised layers (TensorRT's mixed mode)
    int8-cpu   the int8 variant that runs fastest in ONNX Runtime on this CPU
"""

PRECISIONS = ("fp32", "fp16", "int8", "int8-fp16", "int8-cpu")
