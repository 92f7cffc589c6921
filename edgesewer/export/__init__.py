"""The export stage: PyTorch model -> deployable artifacts (ONNX fp32/fp16/int8 + sidecar, TensorRT engine).

Modules, in pipeline order (`pipeline.run_export` runs them all; `edgesewer export` is its CLI):

    weights        which checkpoint (newest under runs/, a path, or "random")
    onnx_export    torch.onnx.export (TorchScript exporter, opset 17/16, dynamic batch, named I/O)
    onnx_io        load/save for every step; tensors in <file>.onnx.data for graphs over 2 GB
    simplify       onnxsim, switchable
    parity         PyTorch vs ONNX Runtime on real images; fails the export on regression
    fp16           FP16 graph with FP32 I/O, norms, softmax and head
    calibrate      class-stratified image choice, corrupt-tolerant reader, cached activation ranges
    quantize       int8 (TensorRT Q/DQ) and int8-cpu (fastest ONNX Runtime variant on this CPU)
    accuracy       per-precision accuracy through ONNX Runtime with deltas to fp32
    tensorrt_build feature-probed engine builder for TensorRT 8.5 / 10.x / 11.x (`edgesewer build`)
    metadata       the sidecar JSON (torch-free; shared contract with edgesewer.runtime)
    profiles       export/<target>.yaml target profiles
    device_info    GPU, JetPack/L4T of the build machine (torch-free)

Importing this package imports nothing heavy; torch and onnx load inside the modules that need them.
"""
