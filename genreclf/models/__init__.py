"""The models: scikit-learn pipelines, Keras networks, their input pipeline, training and inference."""
