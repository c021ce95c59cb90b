"""The reference ConvNet for 32×32 RGB images, with an optional BatchNorm variant."""

from __future__ import annotations

from torch import nn

from training.config import ConfigError


class ConvNet(nn.Module):
    """conv 3→32, conv 32→64 (each 3×3 pad 1 + [BatchNorm] + ReLU + 2×2 max-pool), fc 4096→512 + ReLU, fc 512→10."""

    def __init__(self, num_classes: int = 10, batch_norm: bool = False) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            norm = [nn.BatchNorm2d(c_out)] if batch_norm else []
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), *norm, nn.ReLU(), nn.MaxPool2d(2))

        self.features = nn.Sequential(block(3, 32), block(32, 64))
        self.classifier = nn.Sequential(
            nn.Flatten(),  # not x.view(-1, 64*8*8): that fails on channels_last tensors
            nn.Linear(64 * 8 * 8, 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.classifier(self.features(x))


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    if name == "convnet":
        return ConvNet(num_classes)
    if name == "convnet_bn":
        return ConvNet(num_classes, batch_norm=True)
    raise ConfigError(f"model.name={name!r} is unknown; choose one of: convnet, convnet_bn")
