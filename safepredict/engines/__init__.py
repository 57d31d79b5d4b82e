"""What runs a model's network for SafePredictor: the framework adapters, or onnxruntime.

``onnxruntime.OnnxEngine`` runs an exported graph with safepredict's numpy steps (``ops``) around it;
the framework adapters live under ``safepredict.frameworks``.
"""
