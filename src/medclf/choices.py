"""Every enumerated config value, named once.

The compose-time rules (``config_checks.RULES``) and the modules that act on a value read the
same tuples, so a new option is added in one place. Nothing heavy is imported here: the rules
run before torch is loaded."""

from __future__ import annotations

FORMATS = ("auto", "folder", "manifest", "npz")  # data.format
NORMALIZE = ("auto", "model", "dataset", "imagenet", "none")  # data.normalize
HEADS = ("linear", "mlp")  # model.head
OPTIMIZERS = ("adamw", "adam", "adamax", "sgd")  # train.optimizer, stages' optimizer
SCHEDULERS = ("cosine", "step", "multistep", "onecycle", "plateau", "none")  # scheduler.name
LOSSES = ("ce", "focal")  # train.loss.name
SAMPLERS = ("weighted",)  # train.sampler (or null)
PROFILERS = ("simple", "advanced", "pytorch")  # train.profiler (or null)
STRATEGIES = ("auto", "ddp")  # train.strategy
PRECISIONS = ("32", "32-true", "bf16-mixed", "16-mixed")  # train.precision
MONITOR_MODES = ("auto", "min", "max")  # train.monitor_mode
NAME_ID_MODES = ("auto", "none")  # data.patient_pattern words (anything else is a regex)
BACKENDS = ("torch", "onnx")  # evaluate backend=: the PyTorch weights or the ONNX export
GLOBAL_POOLS = ("avg", "max", "avgmax", "catavgmax")  # custom_cnn model.global_pool
CI_METHODS = ("bca", "percentile", "basic")  # eval.ci_method (scipy.stats.bootstrap)
GATES_ON = ("point", "ci")  # eval.gates_on
DECISIONS = ("auto", "thresholds", "argmax")  # eval.decision
LOGGERS = ("tensorboard", "mlflow", "wandb", "csv")  # logger
WANDB_MODES = ("online", "offline", "disabled")  # wandb.mode
RECIPES = ("auto", "none")  # recipe
EVIDENTLY_MODES = ("auto", "always", "never")  # monitor.evidently (monitoring.evidently_report)
CUSTOM_MODELS = ("custom_cnn",)  # model.name values built by medclf, not timm
