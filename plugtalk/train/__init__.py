"""Training: FixTalk's two-stage recipe (suppl. Sec. 1.2) from one CPU to many GPUs.

>>> from plugtalk.train import load_config, Trainer
>>> cfg = load_config("small-cpu", ["data.folder=clips/", "optim.steps=200"])   # doctest: +SKIP
>>> Trainer(cfg).fit()                                                           # doctest: +SKIP

or ``plugtalk train --config small-cpu --set data.folder=clips/`` (``torchrun --nproc_per_node N
-m plugtalk.cli train ...`` for several GPUs).  Stages are registered objects
(:mod:`plugtalk.train.stages`); recipes chain them (:mod:`plugtalk.train.recipes`,
``plugtalk train --recipe fixtalk-edtalk``).
"""

from .config import TrainConfig, config_from_mapping, load_config, packaged_configs
from .discriminator import Discriminator, DiscriminatorConfig
from .losses import PerceptualLoss, VGG19Features
from .stages import Stage, build_model, get_stage, register_stage, stage_names
from .trainer import Trainer, TrainingDiverged, build_dataset

__all__ = ["TrainConfig", "load_config", "config_from_mapping", "packaged_configs", "Trainer", "TrainingDiverged",
           "build_dataset", "build_model", "Stage", "register_stage", "get_stage", "stage_names", "Discriminator",
           "DiscriminatorConfig", "PerceptualLoss", "VGG19Features"]
