"""Graph passes, one per module. Each takes a graph (an ``onnx.ModelProto`` for the passes that need onnx's
converters, an ``onnx_graphsurgeon.Graph`` for the rewrites) and a config, and returns a graph or, for the two
analysis passes (``select_targets``, ``calibrate``), what they found. None reads files, prints or knows the CLI;
``calibrate`` is the only one that runs the model (stock onnxruntime, CPU provider, in memory)."""
