"""The torch-free live runtime: what runs on the robot (numpy + OpenCV + ONNX Runtime or TensorRT).

uri / sources      where frames come from (cameras, CSI, RTSP/HTTP streams, files, image folders)
artifact, backends the exported model + sidecar, run by ONNX Runtime or TensorRT
predictors         frame -> model input (shared preprocessing) -> outputs
postprocess        sigmoid, thresholds, temporal smoothing, crack measures
pipeline           the threaded capture -> preprocess -> infer -> postprocess -> sinks loop
overlay / sinks    annotated frames to a window or a video file
live_sinks         the operator's live view: MJPEG over HTTP, H.264 over RTSP (GStreamer)
events / segments / report   JSONL log, merged defect segments, the inspection report
stats              pipeline FPS vs network FPS, per-stage latency, dropped frames

Nothing here may import torch, timm or onnx (tests/test_runtime_torchfree.py checks every module).
Submodules are not imported here, so `import edgesewer.runtime` stays cheap.
"""
