"""Tools built on the pipeline's API, apart from the stages themselves (load → analyse → score → plan →
rewrite → verify → save): `bench` (latency and memory side by side), `sweep` (prune at several ratios and
measure), `batch` (many models in parallel processes), `html` (the self-contained report). Each uses
`spa.api`; nothing in the pipeline depends on them except `--target-latency`, which times candidates with
`bench.compare`."""
