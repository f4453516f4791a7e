"""Teacher and student architectures, one registry, built for a data set's input shape.

Every factory is `fn(input_shape, num_classes) -> nn.Module`; input_shape has no batch
dimension: (D,) for tabular data, (C, L) for 1-D signals, (C, H, W) for images. Each module maps float32
(B, *input_shape) -> logits (B, num_classes). Shapes an architecture cannot take are
refused with a FitError naming the model, so the UI can grey out a bad pairing before
anything trains. Weights are never downloaded (torchvision `weights=None`).

Each factory also declares its taps: named places where a method may take intermediate
features (an MLP's hidden layers, the stages of a CNN / LeNet / ResNet), as
`model.taps = {name: submodule path}`, the output of that submodule. Every model also has the
tap "embedding", the input of its last nn.Linear (the penultimate features). `taps(model)`
lists them in order of depth; kd/features.py takes them with forward hooks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from kd.errors import FitError
from kd.registry import Registry

Factory = Callable[[tuple, int], nn.Module]
MODELS: Registry[Factory] = Registry("model")


def _shape_text(shape: tuple) -> str:
    if len(shape) == 1:
        return f"{shape[0]} features per example"
    if len(shape) == 2:
        return f"1-D signals of {shape[0]} channel(s) x {shape[1]} samples"
    return "shape " + "x".join(str(s) for s in shape)


def _image(shape: tuple) -> tuple[int, int, int]:
    """(C, H, W) or FitError: image models cannot take tabular rows."""
    if len(shape) != 3:  # factories' messages start at the verb; _build prefixes the key
        raise FitError(f"needs images (C, H, W); this data set has {_shape_text(shape)}")
    return shape  # type: ignore[return-value]


def _signal(shape: tuple) -> tuple[int, int]:
    """(C, L) or FitError: 1-D convolutions take signals only."""
    if len(shape) != 2:
        raise FitError(f"needs 1-D signals (C, L); this data set has {_shape_text(shape)}")
    return shape  # type: ignore[return-value]


def _flat(shape: tuple) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


# ---------------------------------------------------------------- MLPs (take any shape)
def _mlp(shape: tuple, num_classes: int, hidden: list[int], p_in=0.0, p_hidden=0.0) -> nn.Module:
    # (B, *shape) -> (B, D) -> hidden ReLU layers -> (B, num_classes)
    layers: list[nn.Module] = [nn.Flatten()]
    if p_in:
        layers.append(nn.Dropout(p_in))
    width = _flat(shape)
    taps = {}
    for i, h in enumerate(hidden, 1):
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        taps[f"hidden{i}"] = str(len(layers) - 1)  # the ReLU's output (before any dropout)
        if p_hidden:
            layers.append(nn.Dropout(p_hidden))
        width = h
    layers.append(nn.Linear(width, num_classes))
    if hidden:  # the penultimate features before any dropout, as a frozen teacher's are
        taps[EMBEDDING] = taps[f"hidden{len(hidden)}"]
    return _tapped(nn.Sequential(*layers), taps)


@MODELS.register("mlp-512-256", "The seed note's teacher: MLP with 512 and 256 hidden units (ReLU)")
def mlp_512_256(shape, num_classes):
    return _mlp(shape, num_classes, [512, 256])


@MODELS.register("mlp-128", "The seed note's student: MLP with one hidden layer of 128 units (ReLU)")
def mlp_128(shape, num_classes):
    return _mlp(shape, num_classes, [128])


@MODELS.register("hinton-1200", "Hinton et al. 2015 teacher: MLP 1200-1200 ReLU, dropout 0.2 on input, 0.5 hidden")
def hinton_1200(shape, num_classes):
    return _mlp(shape, num_classes, [1200, 1200], p_in=0.2, p_hidden=0.5)


@MODELS.register("hinton-800", "Hinton et al. 2015 student: MLP 800-800 ReLU, no dropout")
def hinton_800(shape, num_classes):
    return _mlp(shape, num_classes, [800, 800])


# ---------------------------------------------------------------- LeNet-5
def _lenet(shape, num_classes, c1, c2, f1, f2) -> nn.Module:
    c, h, w = _image(shape)
    # conv 5x5 pad 2 keeps H; pool -> H//2; conv 5x5 -> H//2-4; pool -> (H//2-4)//2 >= 1
    # needs H//2 >= 6, i.e. at least 12 pixels per side (28 -> 14 -> 10 -> 5).
    if min(h, w) < 12:
        raise FitError(f"needs images of at least 12x12 pixels; this data set is {h}x{w}")
    oh, ow = (h // 2 - 4) // 2, (w // 2 - 4) // 2
    model = nn.Sequential(
        nn.Conv2d(c, c1, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),  # (B, c2, oh, ow) -> (B, c2*oh*ow), 16*5*5 on 28x28
        nn.Linear(c2 * oh * ow, f1),
        nn.ReLU(inplace=True),
        nn.Linear(f1, f2),
        nn.ReLU(inplace=True),
        nn.Linear(f2, num_classes),
    )
    return _tapped(model, {"conv1": "2", "conv2": "5", "fc1": "8", "fc2": "10"})  # after the pools and ReLUs


@MODELS.register("lenet5", "Classic LeNet-5: conv 6@5x5 pad 2, conv 16@5x5, fc 120-84 (images >= 12x12)")
def lenet5(shape, num_classes):
    return _lenet(shape, num_classes, 6, 16, 120, 84)


@MODELS.register("lenet5-half", "LeNet-5 with halved widths: conv 3, conv 8, fc 60-42 (images >= 12x12)")
def lenet5_half(shape, num_classes):
    return _lenet(shape, num_classes, 3, 8, 60, 42)


# ---------------------------------------------------------------- small CNN, width multiplier
def _conv_stack(
    c: int, side: int, num_classes: int, mult: float, ops: tuple, kernel: int, pool: int, room: int
) -> nn.Module:
    """3 conv-BN-ReLU blocks of 32/64/128 x mult channels, a max-pool after the first two while
    `side` (the spatial size) has room, global average pool, a linear head; taps block1..block3.
    `ops`: (Conv, BatchNorm, MaxPool, AdaptiveAvgPool) of the dimension (1-D or 2-D)."""
    conv, norm, max_pool, avg_pool = ops
    layers: list[nn.Module] = []
    taps = {}
    for i, base in enumerate((32, 64, 128)):
        out = max(1, int(round(base * mult)))
        layers += [conv(c, out, kernel, padding=kernel // 2, bias=False), norm(out), nn.ReLU(inplace=True)]
        if i < 2 and side >= room:  # pool only where there is room: 8x8 digits -> 4 -> 2; 256 samples -> 64 -> 16
            layers.append(max_pool(pool))
            side //= pool
        taps[f"block{i + 1}"] = str(len(layers) - 1)
        c = out
    # (B, 128*w, *spatial) -> (B, 128*w) -> (B, num_classes)
    layers += [avg_pool(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return _tapped(nn.Sequential(*layers), taps)


def _cnn(shape, num_classes, mult: float) -> nn.Module:
    c, h, w = _image(shape)
    ops = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)
    return _conv_stack(c, min(h, w), num_classes, mult, ops, kernel=3, pool=2, room=2)


for _m in ("2", "1", "0.5", "0.25"):
    MODELS.add(
        f"cnn-x{_m}",
        lambda s, k, m=float(_m): _cnn(s, k, m),
        f"Small CNN, 3 conv3x3-BN-ReLU blocks of {32 * float(_m):g}/{64 * float(_m):g}/"
        f"{128 * float(_m):g} channels, global average pool",
    )


# ---------------------------------------------------------------- 1-D CNN for signals, width multiplier
def _cnn1d(shape, num_classes, mult: float) -> nn.Module:
    c, length = _signal(shape)
    ops = (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d)
    return _conv_stack(c, length, num_classes, mult, ops, kernel=7, pool=4, room=8)


for _m in ("2", "1", "0.5", "0.25"):
    MODELS.add(
        f"cnn1d-x{_m}",
        lambda s, k, m=float(_m): _cnn1d(s, k, m),
        f"1-D CNN for signals, 3 conv7-BN-ReLU blocks of {32 * float(_m):g}/{64 * float(_m):g}/"
        f"{128 * float(_m):g} channels, max-pool 4, global average pool",
    )


# ---------------------------------------------------------------- CIFAR ResNets (mdistiller / CRD)
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None  # 1x1 conv + BN when the shape changes, as in mdistiller
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class CifarResNet(nn.Module):
    """depth = 6n+2; filters = [stem, stage1, stage2, stage3]; stride 2 at stages 2 and 3."""

    def __init__(self, in_ch: int, depth: int, filters: list[int], num_classes: int):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_ch, filters[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters[0])
        self.relu = nn.ReLU(inplace=True)
        stages, cin = [], filters[0]
        for i, cout in enumerate(filters[1:]):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        # adaptive instead of mdistiller's AvgPool2d(8), so any image size works
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        self.taps = {"stem": "relu", "layer1": "layer1", "layer2": "layer2", "layer3": "layer3"}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))  # (B, C, H, W) -> (B, f0, H, W)
        x = self.layer3(self.layer2(self.layer1(x)))  # -> (B, f3, H/4, W/4)
        return self.fc(torch.flatten(self.avgpool(x), 1))  # -> (B, f3) -> (B, classes)


_RESNETS = {
    "resnet8x4": (8, [32, 64, 128, 256], "CIFAR ResNet-8x4 (mdistiller student): 1 block/stage, 64-128-256 ch"),
    "resnet32x4": (32, [32, 64, 128, 256], "CIFAR ResNet-32x4 (mdistiller teacher): 5 blocks/stage, 64-128-256 ch"),
    "resnet20": (20, [16, 16, 32, 64], "CIFAR ResNet-20 (He et al. 2016): 3 blocks/stage, 16-32-64 ch"),
    "resnet56": (56, [16, 16, 32, 64], "CIFAR ResNet-56 (He et al. 2016): 9 blocks/stage, 16-32-64 ch"),
}
for _key, (_depth, _filters, _desc) in _RESNETS.items():
    MODELS.add(_key, lambda s, k, d=_depth, f=_filters: CifarResNet(_image(s)[0], d, f, k), _desc)


# ---------------------------------------------------------------- torchvision, adapted to small inputs
@MODELS.register(
    "resnet18", "torchvision ResNet-18, CIFAR stem (3x3 stride-1 conv, no max-pool), no pretrained weights"
)
def resnet18(shape, num_classes):
    import torchvision  # lazily: it adds seconds to `import kd.models`

    c = _image(shape)[0]
    m = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    # the ImageNet stem (7x7 stride 2 + max-pool) would shrink 32x32 to 8x8 before stage 1
    m.conv1 = nn.Conv2d(c, 64, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(m.conv1.weight, mode="fan_out", nonlinearity="relu")
    m.maxpool = nn.Identity()
    return _tapped(m, {"stem": "relu", **{f"layer{i}": f"layer{i}" for i in range(1, 5)}})


@MODELS.register("mobilenet_v3_small", "torchvision MobileNetV3-Small, 3x3 stride-1 first conv, no pretrained weights")
def mobilenet_v3_small(shape, num_classes):
    import torchvision

    c = _image(shape)[0]
    m = torchvision.models.mobilenet_v3_small(weights=None, num_classes=num_classes)
    old = m.features[0][0]  # Conv2d(3, 16, 3, stride 2) -> Conv2d(C, 16, 3, stride 1)
    m.features[0][0] = nn.Conv2d(c, old.out_channels, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(m.features[0][0].weight, mode="fan_out")
    # the last block at each resolution (with the stride-1 first conv: 1/2, 1/4, 1/8, 1/16)
    stages = {"stage1": "features.1", "stage2": "features.3", "stage3": "features.8", "stage4": "features.12"}
    return _tapped(m, {**stages, EMBEDDING: "avgpool"})  # pooled, before the head's dropout


# ---------------------------------------------------------------- taps
EMBEDDING = "embedding"  # every model's penultimate features: the input of its last nn.Linear


def _tapped(model: nn.Module, taps: dict[str, str]) -> nn.Module:
    model.taps = taps  # name -> submodule path (model.get_submodule), in order of depth
    return model


def taps(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """The model's taps in order of depth: name -> (submodule, "output" | "input"). The declared
    ones take the submodule's output; "embedding", unless declared, takes the input of the last
    nn.Linear."""
    declared = dict(getattr(model, "taps", {}))
    embedding = declared.pop(EMBEDDING, None)
    out = {name: (model.get_submodule(path), "output") for name, path in declared.items()}
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if embedding is not None:
        out[EMBEDDING] = (model.get_submodule(embedding), "output")
    elif last:
        out[EMBEDDING] = (last[-1], "input")
    return out


# ---------------------------------------------------------------- public API
def _build(name: str, input_shape, num_classes: int, device) -> nn.Module:
    factory = MODELS.get(name)  # UnknownKeyError listing the keys
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (1, 2, 3) or min(shape, default=0) < 1:
        raise FitError(f"{name} needs a (D,), (C, L) or (C, H, W) input shape; got {shape}")
    if int(num_classes) < 2:
        raise FitError(f"{name} needs at least 2 classes; got {num_classes}")
    try:
        with torch.device(device):
            return factory(shape, int(num_classes))
    except FitError as e:
        raise FitError(f"{name} {e}") from None


def _dry_run(name: str, model: nn.Module, shape: tuple, device) -> None:
    """Shape-check a forward pass of one zero example; too-small images fail here."""
    was_training = model.training
    model.eval()  # BN on a (1, C, 1, 1) map would refuse in train mode
    try:
        with torch.no_grad():
            model(torch.zeros((1, *shape), device=device))
    except RuntimeError as e:
        what = f"{shape[1]}x{shape[2]} images" if len(shape) == 3 else _shape_text(shape)
        raise FitError(f"{name} cannot take {what} ({str(e).splitlines()[0]})") from None
    finally:
        model.train(was_training)


def check_fit(name: str, input_shape, num_classes: int) -> None:
    """Raise FitError / UnknownKeyError if `name` cannot be built for this shape.

    Builds and runs on the "meta" device: shapes only, no memory and no arithmetic,
    so it is cheap enough to call for every drop-down choice in the UI. A fit once shown is
    remembered (for the factory registered under the name then): a sweep builds many students
    of one architecture."""
    shape = tuple(int(s) for s in input_shape)
    key = (name, shape, int(num_classes), MODELS.get(name))
    if key in _FITS:
        return
    model = _build(name, shape, num_classes, "meta")
    _dry_run(name, model, shape, "meta")
    _FITS.add(key)


_FITS: set[tuple] = set()  # (name, input shape, classes, factory) that check_fit passed


def check_built(name: str, input_shape, num_classes: int) -> nn.Module:
    """The model built on the meta device (shapes only), after check_fit: for asking about its
    taps, or binding a method to it, before anything is trained."""
    check_fit(name, input_shape, num_classes)
    return _build(name, input_shape, num_classes, "meta")


def build(name: str, input_shape, num_classes: int) -> nn.Module:
    """A freshly initialised model on CPU (deterministic given torch.manual_seed)."""
    check_fit(name, input_shape, num_classes)  # meta build uses no random numbers
    return _build(name, input_shape, num_classes, "cpu")


def param_count(name: str, input_shape, num_classes: int) -> int:
    """Trainable parameters of the built model (counted on the meta device)."""
    check_fit(name, input_shape, num_classes)
    model = _build(name, input_shape, num_classes, "meta")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
