import itertools

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from medclf.config import compose
from medclf.errors import MedclfError
from medclf.models import build_model
from medclf.models.factory import head_module
from medclf.training.losses import build_loss
from medclf.training.module import Classifier
from medclf.training.stages import Stage, build_optimizer, build_scheduler, resolve_stages


def _stage(**kw) -> Stage:
    cfg = compose([f"train.{k}={v}" for k, v in kw.items()])
    return resolve_stages(cfg.train)[0]


def test_default_is_one_stage_from_the_train_keys():
    (stage,) = resolve_stages(compose(["train.max_epochs=7", "train.optimizer=sgd"]).train)
    assert (stage.epochs, stage.trainable, stage.optimizer, stage.early_stopping) == (
        7,
        "all",
        "sgd",
        True,
    )


def test_two_stage_recipe_is_the_seeds():
    cfg = compose(["train=two_stage"])
    head, finetune = resolve_stages(cfg.train)
    assert (head.trainable, head.optimizer, head.lr, head.epochs) == ("head", "adam", 1e-4, 5)
    assert not head.early_stopping and head.scheduler["name"] == "none"
    assert (finetune.trainable, finetune.optimizer) == ("all", "adamw")
    assert (finetune.head_lr, finetune.backbone_lr, finetune.weight_decay) == (3e-5, 5e-6, 0.01)
    assert finetune.scheduler["name"] == "cosine" and finetune.scheduler["min_lr"] == 1e-7
    assert finetune.early_stopping and cfg.train.early_stopping.patience == 5
    assert cfg.train.loss.label_smoothing == 0.1


@pytest.mark.parametrize(
    ("stages", "match"),
    [
        (
            "[{epochs:2,learning_rate:0.1}]",
            r"unknown config key 'train\.stages\[1\]\.learning_rate'",
        ),
        ("[{epochs:0}]", r"train\.stages\[1\]\.epochs=0 is not valid: expected an integer >= 1"),
        ("[{epochs:1},{trainable:backbone}]", r"stages\[2\]\.trainable=backbone is not valid"),
        ("[{epochs:1,optimizer:lamb}]", r"optimizer=lamb is not valid: expected one of adamw"),
        ("[{epochs:1,scheduler:linear}]", r"scheduler=linear is not valid: expected one of cosine"),
        ("[{epochs:1,lr:-1}]", r"stages\[1\]\.lr=-1 is not valid: expected a number > 0"),
    ],
)
def test_bad_stages_name_the_stage_and_key_at_compose(stages, match):
    with pytest.raises(MedclfError, match=match):
        compose([f"train.stages={stages}"])


def test_optimizers_honor_their_settings():
    params = [torch.nn.Parameter(torch.zeros(2))]
    sgd = build_optimizer([], params, _stage(optimizer="sgd", momentum=0.8, nesterov="true"))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.8 and sgd.param_groups[0]["nesterov"]
    assert isinstance(build_optimizer([], params, _stage(optimizer="adamax")), torch.optim.Adamax)
    split = build_optimizer(
        [torch.nn.Parameter(torch.zeros(1))], params, _stage(backbone_lr=1e-5, head_lr=1e-3)
    )
    assert [(g["name"], g["lr"]) for g in split.param_groups] == [
        ("backbone", 1e-5),
        ("head", 1e-3),
    ]


def _lrs(stage: Stage, steps_per_epoch: int, metric: list[float] | None = None) -> list[float]:
    opt = build_optimizer([], [torch.nn.Parameter(torch.zeros(1))], stage)
    cfg = build_scheduler(opt, stage, steps_per_epoch, "val/loss", "min")
    seen = []
    for epoch in range(stage.epochs):
        for _ in range(steps_per_epoch):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            if cfg and cfg["interval"] == "step":
                cfg["scheduler"].step()
        if cfg and cfg["interval"] == "epoch":
            if "monitor" in cfg:
                cfg["scheduler"].step(metric[epoch])
            else:
                cfg["scheduler"].step()
    return seen


def test_cosine_warms_up_then_decays_to_min_lr():
    lrs = _lrs(_stage(max_epochs=10, lr=0.1, **{"scheduler.warmup_epochs": 2}), 5)
    assert lrs[0] < 0.02 and max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) == 10
    assert lrs[-1] < 0.001 and all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_step_multistep_onecycle_and_plateau_schedules():
    step = _lrs(
        _stage(max_epochs=4, lr=1.0, **{"scheduler.name": "step", "scheduler.step_size": 2}), 1
    )
    assert step == pytest.approx([1.0, 1.0, 0.1, 0.1])
    multi = _lrs(
        _stage(
            max_epochs=5, lr=1.0, **{"scheduler.name": "multistep", "scheduler.milestones": "[1,3]"}
        ),
        1,
    )
    assert multi == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01])
    one = _lrs(_stage(max_epochs=5, lr=1.0, **{"scheduler.name": "onecycle"}), 4)
    peak = one.index(max(one))
    assert 0 < peak < len(one) - 1 and max(one) == pytest.approx(1.0, rel=1e-3)
    assert one[0] < 0.1 and one[-1] < 0.01
    plateau = _lrs(
        _stage(max_epochs=6, lr=1.0, **{"scheduler.name": "plateau", "scheduler.patience": 1}),
        1,
        metric=[1.0, 0.9, 0.9, 0.9, 0.9, 0.9],
    )
    assert plateau[:4] == pytest.approx([1.0, 1.0, 1.0, 1.0]) and plateau[4] == pytest.approx(0.1)


class StageProbe(L.Callback):
    """Records weights after stage 1 and the optimizer each epoch actually used."""

    def __init__(self) -> None:
        self.optimizers: dict[int, list[tuple[str, str, float]]] = {}
        self.after_stage1: dict[str, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            opt = trainer.optimizers[0]
            self.optimizers[trainer.current_epoch] = [
                (type(opt).__name__, g["name"], g["lr"]) for g in opt.param_groups
            ]

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            self.after_stage1 = {k: v.clone() for k, v in pl_module.model.state_dict().items()}


def test_two_stage_freezes_the_backbone_then_trains_all_with_two_rates():
    cfg = compose(["train=two_stage", "model=resnet18"])
    train = OmegaConf.merge(
        cfg.train,
        {"stages": [{**s, "epochs": 1} for s in OmegaConf.to_container(cfg.train.stages)]},
    )
    stages = resolve_stages(train)
    L.seed_everything(0, verbose=False)
    model = build_model(cfg.model, num_classes=3, in_chans=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    module = Classifier(
        model, 3, stages, build_loss(cfg.train.loss, [8, 8, 8]), augment=None, image_size=32
    )
    x, y = torch.rand(24, 1, 32, 32), torch.arange(24) % 3
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    probe = StageProbe()
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe],
    )
    trainer.fit(module, loader, loader)

    head_keys = {f"fc.{k}" for k in head_module(model).state_dict()}
    after1 = probe.after_stage1
    for key, value in before.items():
        if key in head_keys:
            assert not torch.equal(value, after1[key]), f"head {key} did not train in stage 1"
        else:  # weights and batch-norm running statistics alike
            assert torch.equal(value, after1[key]), f"frozen {key} changed in stage 1"
    assert probe.optimizers[0] == [("Adam", "head", 1e-4)]
    assert probe.optimizers[1] == [("AdamW", "backbone", 5e-6), ("AdamW", "head", 3e-5)]
    final = model.state_dict()
    assert not torch.equal(final["conv1.weight"], after1["conv1.weight"])  # stage 2 trains all
