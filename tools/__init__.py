"""Training, quantization, evaluation and benchmarks. TensorFlow may be imported here (lazily), never in edge/."""
