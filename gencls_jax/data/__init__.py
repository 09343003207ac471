"""Data pipeline: sources -> cleaning -> cached tokenization -> splits -> rows -> batches -> device.

One file per step: sources (readers, labels, Dataset), clean, tokenize (Tokens, cache), splits
(validation hold-out, seeded N-per-class samples), rows (the BOS-shifted (inputs, targets,
weights) recipe, long texts, label prefixes), batching (pad/bucket/pack, per-class streams,
scoring batches), prefetch (background device puts), pipeline (config.data -> all of the above).
Nothing here imports the model or the scorer.
"""
