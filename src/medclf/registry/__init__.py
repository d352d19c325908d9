"""The model registry: governed releases in MLflow's model registry.

``register`` logs a run's exported ONNX file (MLflow's onnx flavor) with its report, card,
metrics, gates, split and metadata as a new model version, tagged with the headline metrics and
their intervals, the gates and the data fingerprint. An alias (``production``) moves only when
the version's gates passed (or by ``--force`` with a recorded reason); every move is recorded, so
``rollback`` returns an alias to the version it pointed to before. ``models:/NAME@ALIAS`` and
``models:/NAME/VERSION`` are fetched once into a local cache keyed by version. MLflow 3 aliases,
no stages.
"""
