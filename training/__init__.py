"""One trial of the reference ConvNet on CIFAR-10: data on the device, a loop that yields per-epoch records.

Public API:
    TrialConfig                      typed config (groups data/model/optimizer/scheduler/train)
    load_data(cfg.data, device)      CIFAR-10 splits as uint8 tensors on the device (cached)
    train_epochs(cfg, data)          generator of per-epoch records (keys: RECORD_KEYS)
    fit(cfg, data, on_epoch)         a whole trial → FitResult(status, records)
    train_epochs_fused(cfgs, data)   K trials as one fused model (GPU): per-epoch lists of records
    fit_fused(cfgs, data)            a whole pack → one FitResult per trial
    gradcheck(module, x, y, l1, l2)  finite differences vs autograd, per parameter
    TrainingError, DataError, NonFiniteLoss, OutOfMemory, ConfigError
"""

from training.config import ConfigError, TrialConfig
from training.data import Dataset, load_data
from training.errors import DataError, NonFiniteLoss, OutOfMemory, TrainingError
from training.fused import FusedTrials, fit_fused, pack_key, train_epochs_fused
from training.gradcheck import gradcheck
from training.loop import RECORD_KEYS, FitResult, Record, fit, resolve_device, train_epochs

__all__ = [
    "RECORD_KEYS", "ConfigError", "DataError", "Dataset", "FitResult", "FusedTrials", "NonFiniteLoss", "OutOfMemory",
    "Record", "TrainingError", "TrialConfig", "fit", "fit_fused", "gradcheck", "load_data", "pack_key",
    "resolve_device", "train_epochs", "train_epochs_fused",
]  # fmt: skip
