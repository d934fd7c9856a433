"""Training: `edge-fas train --config FILE` and the library function `train(config)`.

One job per module, each readable alone:

- config.py: the training config (sections, keys, defaults, checks) and a paper protocol's config;
- data.py: the run's data, streamed (split indices, crop cache, the training loader, the validation
  and test sets) and scoring a model over them;
- distributed.py: torchrun (process group, gradient averaging, global losses, replica checks);
- loop.py: `train()`: the model, the epochs, resume and keep-best, the decision fitted on
  validation, the checkpoint.

The names the rest of edge-fas uses are importable from here (`from edge_fas.training import train`).
"""

from edge_fas.data.crops import drop_modalities  # noqa: F401  (re-exported: MMDG Protocol 2's test-time drops)
from edge_fas.training.config import (DEFAULTS, FREE_FORM, KEEP, SCHEDULES, apply_overrides, check_config, data_params,
                                      heldout_summary, load_train_config, model_input_size, protocol_config,
                                      real_protocol, resolve_workers, train_domain_names)
from edge_fas.training.data import (TrainingData, build_data, evaluate_crops, open_cache, predict, score_loader,
                                    training_loader)
from edge_fas.training.loop import build_model, load_model, lr_factor, save_model, seed_everything, train

__all__ = ["DEFAULTS", "SCHEDULES", "KEEP", "FREE_FORM", "load_train_config", "apply_overrides", "check_config",
           "protocol_config", "real_protocol", "resolve_workers", "train_domain_names", "model_input_size", "data_params",
           "heldout_summary", "TrainingData", "build_data",
           "open_cache", "training_loader", "score_loader", "predict", "evaluate_crops", "train", "build_model",
           "lr_factor", "seed_everything", "save_model", "load_model", "drop_modalities"]
