"""What the library offers, as plain names and limits: the datasets, the splits, the models.

This module imports nothing. The modules that implement these (pandas, scikit-learn,
TensorFlow, librosa behind them) take their names from here, and the pipeline's config
checks its settings against them without loading any of that.
"""

FMA_DATASETS = ("fma_small", "fma_medium", "fma_large")
FMA_METADATA = "fma_metadata"  # the archive of FMA's track metadata (genres, official split)
GTZAN = "gtzan"
FOLDER = "folder"  # your own music: a folder (or an archive of one) laid out <label>/.../<file>
DATASETS = (*FMA_DATASETS, GTZAN, FOLDER)
ARCHIVES = (FMA_METADATA, *FMA_DATASETS, GTZAN, FOLDER)  # the archives whose SHA-1 can be given

SPLITS = ("train", "val", "test")
EXCERPT_FROM = ("start", "middle")  # where convert cuts the excerpt of a longer clip (convert.excerpt_from)

SKLEARN_MODELS = ("gnb", "knn", "logreg", "svm", "musicnn")
# The tables a scikit-learn model can be trained on (params models.sklearn): data/features, data/embeddings.
FEATURE_TABLES = ("features", "embeddings")
MUSICNN_EMBEDDINGS = ("penultimate", "max_pool")  # the layers of MSD_musicnn offered as embeddings
KERAS_MODELS = ("cnn1d", "mobilenet", "cnn2d")

FEATURES_N_MELS = 128  # mel bands under the MFCCs of the FMA feature set
# Where data/features comes from (params features.source): computed from the WAVs, or taken from
# FMA's own tables in fma_metadata.zip (features.csv, echonest.csv), for the FMA datasets only.
FEATURES_COMPUTED = "computed"
FEATURES_FMA = "fma"
FEATURES_ECHONEST = "fma_echonest"
FEATURE_SOURCES = (FEATURES_COMPUTED, FEATURES_FMA, FEATURES_ECHONEST)
# The families a source's columns come in (params features.families): the FMA feature set's 11
# features (computed and fma, in FMA's column order), and echonest.csv's two numeric audio groups.
FMA_FEATURE_FAMILIES = (
    "chroma_cens",
    "chroma_cqt",
    "chroma_stft",
    "mfcc",
    "rmse",
    "spectral_bandwidth",
    "spectral_centroid",
    "spectral_contrast",
    "spectral_rolloff",
    "tonnetz",
    "zcr",
)
ECHONEST_FAMILIES = ("audio_features", "temporal_features")
SOURCE_FAMILIES = {
    FEATURES_COMPUTED: FMA_FEATURE_FAMILIES,
    FEATURES_FMA: FMA_FEATURE_FAMILIES,
    FEATURES_ECHONEST: ECHONEST_FAMILIES,
}
MOBILENET_IMAGENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)  # widths with ImageNet weights
MOBILENET_MIN_IMAGE_SIZE = 32
