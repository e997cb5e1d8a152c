"""What models see: the FMA feature set (librosa) and log-mel spectrograms (TensorFlow ops)."""
