"""Segment large image collections into SA-1B-schema records: ``fastsam batch``.

One row per image (see :mod:`fastsam.batch.records`), written as Parquet or JSON-lines partition files in an output
folder; what the folder already holds is skipped on the next run (:mod:`fastsam.batch.resume`). Two engines run the
same work: :func:`fastsam.batch.local.run_local` (one process, the streaming pipeline of :mod:`fastsam.pipeline`)
and :func:`fastsam.batch.ray_engine.run_ray` (Ray Data, one model per actor; needs ``pip install "fastsam[ray]"``).

Nothing here imports Ray or pyarrow when the package is imported: they are loaded only by the code that needs them.
"""
