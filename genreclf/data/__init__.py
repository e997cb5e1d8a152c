"""Getting the audio: fetch (FMA, GTZAN), decode, split, and write TFRecord shards."""
