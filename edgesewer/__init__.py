"""edgesewer: train, export and run sewer-pipe defect models on the edge.

Importing the package imports no torch, timm, onnx or tensorrt: the runtime
(`edgesewer.runtime`) must load on a Jetson that has only numpy, OpenCV and one
inference backend installed.
"""

__version__ = "0.1.0"
