"""Applications built on the library: the command line (``cli``), model comparison (``compare``), inspection
(``inspect``), running a model (``run``), the benchmarks (``bench``, ``bench_sparse``, ``bench_deepsparse``), the
model zoo (``zoo``) and the small models the repository builds itself (``model_builders``). Nothing in the
library (core, calibration, passes, pipeline) imports from here."""
