"""Keras (functional API) CNN zoo, random init, exported to ONNX with tf2onnx.

The models exist to exercise spa on the graphs tf2onnx emits for Keras models:
NHWC inputs with ``Transpose`` nodes around the NCHW ``Conv`` core, BatchNormalization
folded into ``Conv`` (or left as ``Mul``/``Add`` / ``BatchNormalization`` when it
cannot be folded, e.g. pre-activation BN in DenseNet), ``Flatten`` in H,W,C order
(a ``Transpose`` back to NHWC followed by ``Reshape``), SE blocks with ``Reshape``
and ``Mul``, ``Concat`` along the channel axis, ``ConvTranspose``, ``Resize`` and
the ``Unsqueeze``/``Tile``/``Reshape`` pattern of nearest ``UpSampling2D``.
The second batch mirrors more of the PyTorch zoo (``models/zoo_torch.py``):
bottleneck ResNet-50, ResNeXt and RegNetY with grouped ``Conv2D(groups=...)``
(-> ``Conv`` with ``group``), MobileNetV3-Small (hard-swish / hard-sigmoid ->
``Add``/``Clip``/``Mul``), EfficientNet-B0 (swish -> ``Sigmoid``/``Mul``, SE with
sigmoid gates), SqueezeNet 1.1 (bias convs without BN, conv classifier) and
ShuffleNetV2 (``keras.ops.split`` -> ``Split``; channel shuffle as
Reshape -> Permute -> Reshape, i.e. a 5-D ``Reshape``/``Transpose``/``Reshape``).

Every model exists in two sizes:

* ``"tiny"``  -- 32x32 / 64x64 inputs, small widths, < 300k parameters, fast to
  build/export/run (used by the unit tests);
* ``"full"``  -- realistic widths (ResNet-18, ResNet-50, ResNeXt-50 32x4d,
  MobileNetV2-1.0, MobileNetV3-Small-1.0, EfficientNet-B0, DenseNet-121,
  GoogLeNet, Xception, SqueezeNet 1.1, RegNetY-400MF, ShuffleNetV2 x1.0 at
  224x224; a 4-level UNet at 256x256; a CIFAR-style CNN).

Determinism: :func:`build` calls ``keras.utils.set_random_seed(0)`` before the
model is constructed, so the Keras initializers (unseeded -> seeded from Python's
``random``) are reproducible.  After construction, every BatchNormalization layer
gets non-trivial statistics from ``numpy.random.default_rng(0)``
(gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1), moving_mean ~ N(0, 0.1),
moving_variance ~ U(0.5, 1.5)) and every bias of a Conv/Dense-type layer gets
N(0, 0.05) values (zero biases would hide bias-slicing bugs in the pruner).

Conversion route: ``tf2onnx.convert.from_keras`` works with Keras 3 (keras 3.15,
TF 2.21, tf2onnx 1.17) for all zoo models; it is called with an
``input_signature`` of ``tf.TensorSpec([None, H, W, C], name="input")`` so the
ONNX graph has one input named ``"input"`` with a dynamic batch dimension.
Should ``from_keras`` raise (it relies on a few Keras internals), :func:`export`
falls back to wrapping the model in a ``tf.function`` with the same
input signature and calling ``tf2onnx.convert.from_function``.  Either way the
single graph output is renamed to ``"output"`` and the batch dimension of input
and output gets the symbolic name ``"batch"``.
Grouped convolutions are traced as plain TF ``Conv2D`` ops during conversion
(see ``converters.keras_export.plain_grouped_conv``): Keras would otherwise wrap them in an
XLA-compiled function that tf2onnx leaves unconverted.

TensorFlow, Keras and tf2onnx are imported lazily (importing this module does
not import TensorFlow); ``TF_CPP_MIN_LOG_LEVEL=3`` is set before the import.
"""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Callable

from converters.keras_export import import_keras, import_tf, tf2onnx_convert, tidy_io

if TYPE_CHECKING:  # pragma: no cover
    import keras

__all__ = [
    "KERAS_ZOO",
    "SIZES",
    "build",
    "input_shape",
    "export",
    "export_model",
    "param_count",
]

SIZES = ("tiny", "full")
SEED = 0

# name -> {size: NHWC input shape with batch 1}
_INPUT_SHAPES: dict[str, dict[str, tuple[int, int, int, int]]] = {
    "k_simple_cnn": {"tiny": (1, 32, 32, 3), "full": (1, 32, 32, 3)},
    "k_resnet": {"tiny": (1, 32, 32, 3), "full": (1, 224, 224, 3)},
    "k_mobilenet_v2": {"tiny": (1, 64, 64, 3), "full": (1, 224, 224, 3)},
    "k_densenet": {"tiny": (1, 32, 32, 3), "full": (1, 224, 224, 3)},
    "k_inception": {"tiny": (1, 32, 32, 3), "full": (1, 224, 224, 3)},
    "k_unet": {"tiny": (1, 64, 64, 3), "full": (1, 256, 256, 3)},
    "k_separable": {"tiny": (1, 32, 32, 3), "full": (1, 224, 224, 3)},
    "k_resnet50": {"tiny": (1, 64, 64, 3), "full": (1, 224, 224, 3)},
    "k_resnext": {"tiny": (1, 64, 64, 3), "full": (1, 224, 224, 3)},
    "k_mobilenet_v3": {"tiny": (1, 64, 64, 3), "full": (1, 224, 224, 3)},
    "k_efficientnet": {"tiny": (1, 64, 64, 3), "full": (1, 224, 224, 3)},
    "k_squeezenet": {"tiny": (1, 64, 64, 3), "full": (1, 224, 224, 3)},
    "k_regnet": {"tiny": (1, 64, 64, 3), "full": (1, 224, 224, 3)},
    "k_shufflenet_v2": {"tiny": (1, 64, 64, 3), "full": (1, 224, 224, 3)},
}


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {SIZES}")


def _inp(name: str, size: str):
    keras = import_keras()
    _, h, w, c = _INPUT_SHAPES[name][size]
    return keras.Input(shape=(h, w, c), name="input")


# --------------------------------------------------------------------------- #
# building blocks
# --------------------------------------------------------------------------- #
def _conv_bn_relu(x, filters, kernel=3, strides=1, *, padding="same", use_bias=False,
                  relu6=False, name=None):
    L = import_keras().layers
    x = L.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=use_bias,
                 kernel_initializer="he_normal",
                 name=None if name is None else f"{name}_conv")(x)
    x = L.BatchNormalization(name=None if name is None else f"{name}_bn")(x)
    x = L.ReLU(6.0 if relu6 else None, name=None if name is None else f"{name}_relu")(x)
    return x


# --------------------------------------------------------------------------- #
# k_simple_cnn
# --------------------------------------------------------------------------- #
def _build_simple_cnn(size: str):
    keras = import_keras()
    L = keras.layers
    c1, c2, hidden, classes = (8, 16, 32, 10) if size == "tiny" else (32, 64, 256, 10)
    inp = _inp("k_simple_cnn", size)
    # Conv biases kept (typical "simple CNN"), BN right after -> folded by tf2onnx.
    x = L.Conv2D(c1, 3, padding="same", kernel_initializer="he_normal", name="conv1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.Conv2D(c2, 3, padding="same", kernel_initializer="he_normal", name="conv2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU(name="relu2")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Flatten(name="flatten")(x)  # NHWC flatten: H, W, C order
    x = L.Dense(hidden, kernel_initializer="he_normal", name="fc1")(x)
    x = L.ReLU(name="relu_fc1")(x)
    x = L.Dropout(0.5, name="dropout")(x)
    out = L.Dense(classes, name="output")(x)
    return keras.Model(inp, out, name=f"k_simple_cnn_{size}")


# --------------------------------------------------------------------------- #
# k_resnet
# --------------------------------------------------------------------------- #
def _basic_block(x, filters, strides, name):
    L = import_keras().layers
    in_c = x.shape[-1]
    h = _conv_bn_relu(x, filters, 3, strides, name=f"{name}_1")
    h = L.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                 name=f"{name}_2_conv")(h)
    h = L.BatchNormalization(name=f"{name}_2_bn")(h)
    if strides != 1 or in_c != filters:
        sc = L.Conv2D(filters, 1, strides=strides, use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}_proj_conv")(x)
        sc = L.BatchNormalization(name=f"{name}_proj_bn")(sc)
    else:
        sc = x
    h = L.Add(name=f"{name}_add")([h, sc])
    return L.ReLU(name=f"{name}_out")(h)


def _build_resnet(size: str):
    keras = import_keras()
    L = keras.layers
    inp = _inp("k_resnet", size)
    if size == "tiny":
        x = _conv_bn_relu(inp, 16, 3, 1, name="stem")
        stages = [(16, 1, 1), (32, 2, 2), (64, 1, 2)]  # (filters, blocks, first stride)
        classes = 10
    else:  # ResNet-18
        x = _conv_bn_relu(inp, 64, 7, 2, name="stem")
        x = L.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
        stages = [(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)]
        classes = 1000
    for si, (filters, blocks, stride) in enumerate(stages):
        for bi in range(blocks):
            x = _basic_block(x, filters, stride if bi == 0 else 1, name=f"s{si + 1}b{bi + 1}")
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(classes, name="output")(x)
    return keras.Model(inp, out, name=f"k_resnet_{size}")


# --------------------------------------------------------------------------- #
# k_mobilenet_v2
# --------------------------------------------------------------------------- #
def _make_divisible(v, divisor=8, min_value=None):
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _se_block(x, name, ratio=0.25, gate="hard_sigmoid"):
    L = import_keras().layers
    c = x.shape[-1]
    s = L.GlobalAveragePooling2D(name=f"{name}_se_gap")(x)
    s = L.Reshape((1, 1, c), name=f"{name}_se_reshape")(s)
    s = L.Conv2D(_make_divisible(c * ratio), 1, name=f"{name}_se_reduce")(s)
    s = L.ReLU(name=f"{name}_se_relu")(s)
    s = L.Conv2D(c, 1, name=f"{name}_se_expand")(s)
    s = L.Activation(gate, name=f"{name}_se_gate")(s)
    return L.Multiply(name=f"{name}_se_mul")([x, s])


def _inverted_residual(x, expansion, filters, strides, name, se=False):
    L = import_keras().layers
    in_c = x.shape[-1]
    h = x
    if expansion != 1:
        h = _conv_bn_relu(h, in_c * expansion, 1, relu6=True, name=f"{name}_expand")
    h = L.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                          depthwise_initializer="he_normal", name=f"{name}_dw")(h)
    h = L.BatchNormalization(name=f"{name}_dw_bn")(h)
    h = L.ReLU(6.0, name=f"{name}_dw_relu")(h)
    if se:
        h = _se_block(h, name)
    h = L.Conv2D(filters, 1, use_bias=False, kernel_initializer="he_normal",
                 name=f"{name}_project")(h)
    h = L.BatchNormalization(name=f"{name}_project_bn")(h)  # linear bottleneck
    if strides == 1 and in_c == filters:
        h = L.Add(name=f"{name}_add")([x, h])
    return h


def _build_mobilenet_v2(size: str):
    keras = import_keras()
    L = keras.layers
    inp = _inp("k_mobilenet_v2", size)
    if size == "tiny":
        stem, last, classes = 16, 96, 10
        # (expansion, channels, repeats, first stride)
        cfg = [(1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 3, 2), (6, 24, 2, 2), (6, 32, 1, 1)]
        se_at = (3, 0)  # (stage, repeat) that gets the SE block
    else:  # MobileNetV2 1.0
        stem, last, classes = 32, 1280, 1000
        cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
        se_at = (5, 0)
    # Stem like keras.applications: explicit ZeroPadding2D + valid stride-2 conv (-> Pad).
    x = L.ZeroPadding2D(((0, 1), (0, 1)), name="stem_pad")(inp)
    x = _conv_bn_relu(x, stem, 3, 2, padding="valid", relu6=True, name="stem")
    for si, (t, c, n, s) in enumerate(cfg):
        for ri in range(n):
            x = _inverted_residual(x, t, c, s if ri == 0 else 1, name=f"b{si + 1}_{ri + 1}",
                                   se=(si, ri) == se_at)
    x = _conv_bn_relu(x, last, 1, relu6=True, name="head")
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.2, name="dropout")(x)
    out = L.Dense(classes, name="output")(x)
    return keras.Model(inp, out, name=f"k_mobilenet_v2_{size}")


# --------------------------------------------------------------------------- #
# k_densenet
# --------------------------------------------------------------------------- #
def _dense_layer(x, growth, name):
    """Pre-activation bottleneck: BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k), concat."""
    L = import_keras().layers
    h = L.BatchNormalization(name=f"{name}_bn1")(x)
    h = L.ReLU(name=f"{name}_relu1")(h)
    h = L.Conv2D(4 * growth, 1, use_bias=False, kernel_initializer="he_normal",
                 name=f"{name}_conv1")(h)
    h = L.BatchNormalization(name=f"{name}_bn2")(h)
    h = L.ReLU(name=f"{name}_relu2")(h)
    h = L.Conv2D(growth, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                 name=f"{name}_conv2")(h)
    return L.Concatenate(axis=-1, name=f"{name}_concat")([x, h])


def _transition(x, reduction, name):
    L = import_keras().layers
    h = L.BatchNormalization(name=f"{name}_bn")(x)
    h = L.ReLU(name=f"{name}_relu")(h)
    h = L.Conv2D(int(x.shape[-1] * reduction), 1, use_bias=False,
                 kernel_initializer="he_normal", name=f"{name}_conv")(h)
    return L.AveragePooling2D(2, strides=2, name=f"{name}_pool")(h)


def _build_densenet(size: str):
    keras = import_keras()
    L = keras.layers
    inp = _inp("k_densenet", size)
    if size == "tiny":
        growth, blocks, classes = 8, (3, 4), 10
        x = L.Conv2D(16, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                     name="stem_conv")(inp)
    else:  # DenseNet-121
        growth, blocks, classes = 32, (6, 12, 24, 16), 1000
        x = L.Conv2D(64, 7, strides=2, padding="same", use_bias=False,
                     kernel_initializer="he_normal", name="stem_conv")(inp)
        x = L.BatchNormalization(name="stem_bn")(x)
        x = L.ReLU(name="stem_relu")(x)
        x = L.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for bi, n in enumerate(blocks):
        for li in range(n):
            x = _dense_layer(x, growth, name=f"db{bi + 1}_l{li + 1}")
        if bi != len(blocks) - 1:
            x = _transition(x, 0.5, name=f"tr{bi + 1}")
    x = L.BatchNormalization(name="final_bn")(x)
    x = L.ReLU(name="final_relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(classes, name="output")(x)
    return keras.Model(inp, out, name=f"k_densenet_{size}")


# --------------------------------------------------------------------------- #
# k_inception
# --------------------------------------------------------------------------- #
def _inception_module(x, c1, c3r, c3, c5r, c5, cp, name):
    L = import_keras().layers
    b1 = _conv_bn_relu(x, c1, 1, name=f"{name}_b1")
    b3 = _conv_bn_relu(x, c3r, 1, name=f"{name}_b3r")
    b3 = _conv_bn_relu(b3, c3, 3, name=f"{name}_b3")
    b5 = _conv_bn_relu(x, c5r, 1, name=f"{name}_b5r")
    b5 = _conv_bn_relu(b5, c5, 5, name=f"{name}_b5")
    bp = L.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_bp_pool")(x)
    bp = _conv_bn_relu(bp, cp, 1, name=f"{name}_bp")
    return L.Concatenate(axis=-1, name=f"{name}_concat")([b1, b3, b5, bp])


def _build_inception(size: str):
    keras = import_keras()
    L = keras.layers
    inp = _inp("k_inception", size)
    if size == "tiny":
        x = _conv_bn_relu(inp, 16, 3, name="stem")
        x = _inception_module(x, 8, 8, 12, 4, 8, 8, name="mix_a")
        x = L.MaxPooling2D(2, name="pool_a")(x)
        x = _inception_module(x, 16, 12, 24, 4, 8, 8, name="mix_b")
        classes = 10
    else:  # GoogLeNet (with BN)
        x = _conv_bn_relu(inp, 64, 7, 2, name="stem1")
        x = L.MaxPooling2D(3, strides=2, padding="same", name="stem_pool1")(x)
        x = _conv_bn_relu(x, 64, 1, name="stem2")
        x = _conv_bn_relu(x, 192, 3, name="stem3")
        x = L.MaxPooling2D(3, strides=2, padding="same", name="stem_pool2")(x)
        x = _inception_module(x, 64, 96, 128, 16, 32, 32, name="3a")
        x = _inception_module(x, 128, 128, 192, 32, 96, 64, name="3b")
        x = L.MaxPooling2D(3, strides=2, padding="same", name="pool3")(x)
        x = _inception_module(x, 192, 96, 208, 16, 48, 64, name="4a")
        x = _inception_module(x, 160, 112, 224, 24, 64, 64, name="4b")
        x = _inception_module(x, 128, 128, 256, 24, 64, 64, name="4c")
        x = _inception_module(x, 112, 144, 288, 32, 64, 64, name="4d")
        x = _inception_module(x, 256, 160, 320, 32, 128, 128, name="4e")
        x = L.MaxPooling2D(3, strides=2, padding="same", name="pool4")(x)
        x = _inception_module(x, 256, 160, 320, 32, 128, 128, name="5a")
        x = _inception_module(x, 384, 192, 384, 48, 128, 128, name="5b")
        classes = 1000
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.4, name="dropout")(x)
    out = L.Dense(classes, name="output")(x)
    return keras.Model(inp, out, name=f"k_inception_{size}")


# --------------------------------------------------------------------------- #
# k_unet
# --------------------------------------------------------------------------- #
def _double_conv(x, filters, name):
    # Conv with bias followed by BN (folded by tf2onnx), twice.
    x = _conv_bn_relu(x, filters, 3, use_bias=True, name=f"{name}_1")
    return _conv_bn_relu(x, filters, 3, use_bias=True, name=f"{name}_2")


def _build_unet(size: str):
    keras = import_keras()
    L = keras.layers
    inp = _inp("k_unet", size)
    base, depth, classes = (8, 3, 2) if size == "tiny" else (64, 4, 2)
    skips = []
    x = inp
    for d in range(depth):
        x = _double_conv(x, base * 2 ** d, name=f"enc{d + 1}")
        skips.append(x)
        x = L.MaxPooling2D(2, name=f"enc{d + 1}_pool")(x)
    x = _double_conv(x, base * 2 ** depth, name="bottleneck")
    # Decoder levels (deepest first) cycle through: learned Conv2DTranspose
    # (-> ConvTranspose), nearest UpSampling2D (keras 3 implements it with repeat
    # -> Unsqueeze/Tile/Reshape in ONNX), bilinear UpSampling2D (-> Resize).
    modes = ("transpose", "nearest", "bilinear")
    for k, d in enumerate(reversed(range(depth))):
        f = base * 2 ** d
        mode = modes[k % len(modes)]
        if mode == "transpose":
            x = L.Conv2DTranspose(f, 2, strides=2, padding="same",
                                  kernel_initializer="he_normal", name=f"dec{d + 1}_up")(x)
        else:  # fixed upsampling + conv
            x = L.UpSampling2D(2, interpolation=mode, name=f"dec{d + 1}_upsample")(x)
            x = L.Conv2D(f, 3, padding="same", kernel_initializer="he_normal",
                         name=f"dec{d + 1}_up")(x)
            x = L.ReLU(name=f"dec{d + 1}_up_relu")(x)
        x = L.Concatenate(axis=-1, name=f"dec{d + 1}_concat")([skips[d], x])
        x = _double_conv(x, f, name=f"dec{d + 1}")
    out = L.Conv2D(classes, 1, name="output")(x)
    return keras.Model(inp, out, name=f"k_unet_{size}")


# --------------------------------------------------------------------------- #
# k_separable (Xception-style, no LayerNormalization)
# --------------------------------------------------------------------------- #
def _sep_bn(x, filters, name, relu_before=False):
    L = import_keras().layers
    if relu_before:
        x = L.ReLU(name=f"{name}_pre_relu")(x)
    x = L.SeparableConv2D(filters, 3, padding="same", use_bias=False,
                          depthwise_initializer="he_normal", pointwise_initializer="he_normal",
                          name=f"{name}_sep")(x)
    return L.BatchNormalization(name=f"{name}_bn")(x)


def _xception_down_block(x, filters, name, first_relu=True):
    L = import_keras().layers
    sc = L.Conv2D(filters, 1, strides=2, padding="same", use_bias=False,
                  kernel_initializer="he_normal", name=f"{name}_res_conv")(x)
    sc = L.BatchNormalization(name=f"{name}_res_bn")(sc)
    h = _sep_bn(x, filters, f"{name}_s1", relu_before=first_relu)
    h = _sep_bn(h, filters, f"{name}_s2", relu_before=True)
    h = L.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(h)
    return L.Add(name=f"{name}_add")([h, sc])


def _xception_middle_block(x, name):
    L = import_keras().layers
    c = x.shape[-1]
    h = x
    for i in range(3):
        h = _sep_bn(h, c, f"{name}_s{i + 1}", relu_before=True)
    return L.Add(name=f"{name}_add")([h, x])


def _build_separable(size: str):
    keras = import_keras()
    L = keras.layers
    inp = _inp("k_separable", size)
    if size == "tiny":
        x = _conv_bn_relu(inp, 16, 3, name="stem")
        entry, middle, exit_, classes = (24, 48), 1, (64, 96), 10
    else:  # Xception
        x = _conv_bn_relu(inp, 32, 3, 2, padding="valid", name="stem1")
        x = _conv_bn_relu(x, 64, 3, padding="valid", name="stem2")
        entry, middle, exit_, classes = (128, 256, 728), 8, (1536, 2048), 1000
    for i, f in enumerate(entry):
        x = _xception_down_block(x, f, name=f"entry{i + 1}", first_relu=i > 0)
    for i in range(middle):
        x = _xception_middle_block(x, name=f"middle{i + 1}")
    if size == "full":
        x = _xception_down_block(x, 1024, name="exit_down")
    for i, f in enumerate(exit_):
        x = _sep_bn(x, f, f"exit{i + 1}")
        x = L.ReLU(name=f"exit{i + 1}_relu")(x)
    x = L.GlobalMaxPooling2D(name="gmp")(x)
    out = L.Dense(classes, name="output")(x)
    return keras.Model(inp, out, name=f"k_separable_{size}")


# --------------------------------------------------------------------------- #
# shared helpers for the second batch (ResNet-50 ... ShuffleNetV2)
# --------------------------------------------------------------------------- #
def _act(x, act, name):
    """Apply ``act`` (None, "relu", "relu6" or any Keras activation name)."""
    L = import_keras().layers
    if act is None:
        return x
    if act == "relu":
        return L.ReLU(name=name)(x)
    if act == "relu6":
        return L.ReLU(6.0, name=name)(x)
    return L.Activation(act, name=name)(x)  # "hard_swish", "swish", "sigmoid", ...


def _conv_bn_act(x, filters, kernel=1, strides=1, *, groups=1, act="relu", name):
    """Conv2D (no bias, "same", optionally grouped) -> BN -> activation."""
    L = import_keras().layers
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", groups=groups,
                 use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return _act(x, act, f"{name}_act")


def _dw_bn_act(x, kernel=3, strides=1, *, act="relu", name):
    """DepthwiseConv2D (no bias, "same") -> BN -> activation."""
    L = import_keras().layers
    x = L.DepthwiseConv2D(kernel, strides=strides, padding="same", use_bias=False,
                          depthwise_initializer="he_normal", name=f"{name}_dw")(x)
    x = L.BatchNormalization(name=f"{name}_dw_bn")(x)
    return _act(x, act, f"{name}_dw_act")


def _squeeze_excite(x, squeeze, *, act, gate, name, keepdims=True):
    """torchvision-style SE: avgpool -> 1x1 conv -> act -> 1x1 conv -> gate -> mul.

    ``keepdims=True`` uses ``GlobalAveragePooling2D(keepdims=True)`` (a plain
    ``ReduceMean`` in ONNX); ``keepdims=False`` the GAP + ``Reshape`` form of
    keras.applications (and of :func:`_se_block`).
    """
    L = import_keras().layers
    c = x.shape[-1]
    if keepdims:
        s = L.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_gap")(x)
    else:
        s = L.GlobalAveragePooling2D(name=f"{name}_se_gap")(x)
        s = L.Reshape((1, 1, c), name=f"{name}_se_reshape")(s)
    s = L.Conv2D(squeeze, 1, name=f"{name}_se_reduce")(s)
    s = _act(s, act, f"{name}_se_act")
    s = L.Conv2D(c, 1, name=f"{name}_se_expand")(s)
    s = L.Activation(gate, name=f"{name}_se_gate")(s)
    return L.Multiply(name=f"{name}_se_mul")([x, s])


def _torchvision_stem(x, filters, name="stem"):
    """7x7/2 conv-BN-ReLU + 3x3/2 max-pool (ResNet / ResNeXt stem)."""
    L = import_keras().layers
    x = _conv_bn_act(x, filters, 7, 2, name=name)
    return L.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x)


# --------------------------------------------------------------------------- #
# k_resnet50 / k_resnext
# --------------------------------------------------------------------------- #
def _bottleneck_block(x, planes, strides, name, *, groups=1, base_width=64):
    """torchvision Bottleneck (v1.5: stride on the 3x3), expansion 4."""
    L = import_keras().layers
    in_c = x.shape[-1]
    width = int(planes * (base_width / 64.0)) * groups
    out_c = planes * 4
    h = _conv_bn_act(x, width, 1, name=f"{name}_1")
    h = _conv_bn_act(h, width, 3, strides, groups=groups, name=f"{name}_2")
    h = _conv_bn_act(h, out_c, 1, act=None, name=f"{name}_3")
    if strides != 1 or in_c != out_c:
        sc = _conv_bn_act(x, out_c, 1, strides, act=None, name=f"{name}_proj")
    else:
        sc = x
    h = L.Add(name=f"{name}_add")([h, sc])
    return L.ReLU(name=f"{name}_out")(h)


def _bottleneck_resnet(name, size, *, groups, width_per_group):
    keras = import_keras()
    L = keras.layers
    inp = _inp(name, size)
    if size == "tiny":  # every block type, 1-2 blocks per stage
        base, depths, classes = 8, (1, 2, 1, 1), 10
    else:
        base, depths, classes = 64, (3, 4, 6, 3), 1000
    x = _torchvision_stem(inp, base)
    for si, n in enumerate(depths):
        for bi in range(n):
            stride = 2 if (bi == 0 and si > 0) else 1
            x = _bottleneck_block(x, base * 2 ** si, stride, name=f"s{si + 1}b{bi + 1}",
                                  groups=groups, base_width=width_per_group)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(classes, name="output")(x)
    return keras.Model(inp, out, name=f"{name}_{size}")


def _build_resnet50(size: str):
    return _bottleneck_resnet("k_resnet50", size, groups=1, width_per_group=64)


def _build_resnext(size: str):
    if size == "tiny":  # 4 groups, group conv widths 8/16/32/64
        return _bottleneck_resnet("k_resnext", size, groups=4, width_per_group=16)
    return _bottleneck_resnet("k_resnext", size, groups=32, width_per_group=4)  # 32x4d


# --------------------------------------------------------------------------- #
# k_mobilenet_v3 (Small layout)
# --------------------------------------------------------------------------- #
# (input_c, kernel, expanded_c, out_c, use_se, activation, stride) -- torchvision
_V3_SMALL = (
    (16, 3, 16, 16, True, "relu", 2),
    (16, 3, 72, 24, False, "relu", 2),
    (24, 3, 88, 24, False, "relu", 1),
    (24, 5, 96, 40, True, "hard_swish", 2),
    (40, 5, 240, 40, True, "hard_swish", 1),
    (40, 5, 240, 40, True, "hard_swish", 1),
    (40, 5, 120, 48, True, "hard_swish", 1),
    (48, 5, 144, 48, True, "hard_swish", 1),
    (48, 5, 288, 96, True, "hard_swish", 2),
    (96, 5, 576, 96, True, "hard_swish", 1),
    (96, 5, 576, 96, True, "hard_swish", 1),
)


def _v3_block(x, kernel, expanded, out_c, use_se, act, strides, name):
    L = import_keras().layers
    in_c = x.shape[-1]
    h = x
    if expanded != in_c:
        h = _conv_bn_act(h, expanded, 1, act=act, name=f"{name}_expand")
    h = _dw_bn_act(h, kernel, strides, act=act, name=name)
    if use_se:
        h = _squeeze_excite(h, _make_divisible(expanded // 4, 8), act="relu",
                            gate="hard_sigmoid", name=name)
    h = _conv_bn_act(h, out_c, 1, act=None, name=f"{name}_project")
    if strides == 1 and in_c == out_c:
        h = L.Add(name=f"{name}_add")([x, h])
    return h


def _build_mobilenet_v3(size: str):
    keras = import_keras()
    L = keras.layers
    inp = _inp("k_mobilenet_v3", size)
    # tiny: torchvision's Small layout at width 0.5 (as the PyTorch zoo) with a
    # 96-wide classifier hidden layer (128 would put it just over 300k weights).
    wm, last, classes = (0.5, 96, 10) if size == "tiny" else (1.0, 1024, 1000)
    f = lambda c: _make_divisible(c * wm, 8)  # noqa: E731
    x = _conv_bn_act(inp, f(_V3_SMALL[0][0]), 3, 2, act="hard_swish", name="stem")
    for i, (_, k, e, o, se, act, s) in enumerate(_V3_SMALL):
        x = _v3_block(x, k, f(e), f(o), se, act, s, name=f"b{i + 1}")
    x = _conv_bn_act(x, 6 * x.shape[-1], 1, act="hard_swish", name="head")
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(last, name="fc1")(x)
    x = L.Activation("hard_swish", name="fc1_act")(x)
    x = L.Dropout(0.2, name="dropout")(x)
    out = L.Dense(classes, name="output")(x)
    return keras.Model(inp, out, name=f"k_mobilenet_v3_{size}")


# --------------------------------------------------------------------------- #
# k_efficientnet (B0)
# --------------------------------------------------------------------------- #
# expand, kernel, stride, in, out, repeats -- torchvision EfficientNet-B0
_B0_SETTING = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


def _mbconv(x, expand, kernel, strides, out_c, name, se_ratio=0.25):
    L = import_keras().layers
    in_c = x.shape[-1]
    expanded = _make_divisible(in_c * expand, 8)
    h = x
    if expanded != in_c:
        h = _conv_bn_act(h, expanded, 1, act="swish", name=f"{name}_expand")
    h = _dw_bn_act(h, kernel, strides, act="swish", name=name)
    h = _squeeze_excite(h, max(1, int(in_c * se_ratio)), act="swish", gate="sigmoid",
                        name=name, keepdims=False)
    h = _conv_bn_act(h, out_c, 1, act=None, name=f"{name}_project")
    if strides == 1 and in_c == out_c:  # stochastic depth is the identity at inference
        h = L.Add(name=f"{name}_add")([x, h])
    return h


def _build_efficientnet(size: str):
    keras = import_keras()
    L = keras.layers
    inp = _inp("k_efficientnet", size)
    if size == "tiny":
        wm, cap, last, classes = 0.25, 2, 256, 10
    else:
        wm, cap, last, classes = 1.0, None, 1280, 1000
    adj = lambda c: _make_divisible(c * wm, 8)  # noqa: E731
    x = _conv_bn_act(inp, adj(_B0_SETTING[0][3]), 3, 2, act="swish", name="stem")
    for si, (e, k, s, _, o, n) in enumerate(_B0_SETTING):
        for ri in range(n if cap is None else min(n, cap)):
            x = _mbconv(x, e, k, s if ri == 0 else 1, adj(o), name=f"b{si + 1}_{ri + 1}")
    x = _conv_bn_act(x, last, 1, act="swish", name="head")
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.2, name="dropout")(x)
    out = L.Dense(classes, name="output")(x)
    return keras.Model(inp, out, name=f"k_efficientnet_{size}")


# --------------------------------------------------------------------------- #
# k_squeezenet (1.1)
# --------------------------------------------------------------------------- #
def _fire(x, squeeze, e1, e3, name):
    L = import_keras().layers
    s = L.Conv2D(squeeze, 1, kernel_initializer="he_normal", name=f"{name}_squeeze")(x)
    s = L.ReLU(name=f"{name}_squeeze_relu")(s)
    a = L.Conv2D(e1, 1, kernel_initializer="he_normal", name=f"{name}_expand1x1")(s)
    a = L.ReLU(name=f"{name}_expand1x1_relu")(a)
    b = L.Conv2D(e3, 3, padding="same", kernel_initializer="he_normal",
                 name=f"{name}_expand3x3")(s)
    b = L.ReLU(name=f"{name}_expand3x3_relu")(b)
    return L.Concatenate(axis=-1, name=f"{name}_concat")([a, b])


def _build_squeezenet(size: str):
    """SqueezeNet 1.1: no BN, conv biases, conv classifier + global average pool.

    torchvision's ``ceil_mode`` max-pools are ``"valid"`` pools here; every
    pooled map has an odd size (31/15/7 tiny, 111/55/27 full) so floor == ceil.
    """
    keras = import_keras()
    L = keras.layers
    inp = _inp("k_squeezenet", size)
    div, classes = (4, 10) if size == "tiny" else (1, 1000)
    d = lambda c: max(2, c // div)  # noqa: E731
    x = L.Conv2D(d(64), 3, strides=2, kernel_initializer="he_normal", name="stem_conv")(inp)
    x = L.ReLU(name="stem_relu")(x)
    x = L.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = _fire(x, d(16), d(64), d(64), "fire2")
    x = _fire(x, d(16), d(64), d(64), "fire3")
    x = L.MaxPooling2D(3, strides=2, name="pool3")(x)
    x = _fire(x, d(32), d(128), d(128), "fire4")
    x = _fire(x, d(32), d(128), d(128), "fire5")
    x = L.MaxPooling2D(3, strides=2, name="pool5")(x)
    x = _fire(x, d(48), d(192), d(192), "fire6")
    x = _fire(x, d(48), d(192), d(192), "fire7")
    x = _fire(x, d(64), d(256), d(256), "fire8")
    x = _fire(x, d(64), d(256), d(256), "fire9")
    x = L.Dropout(0.5, name="dropout")(x)
    x = L.Conv2D(classes, 1, kernel_initializer="he_normal", name="classifier_conv")(x)
    x = L.ReLU(name="classifier_relu")(x)
    out = L.GlobalAveragePooling2D(name="output")(x)
    return keras.Model(inp, out, name=f"k_squeezenet_{size}")


# --------------------------------------------------------------------------- #
# k_regnet (RegNetY-400MF style)
# --------------------------------------------------------------------------- #
def _regnet_block(x, w_out, strides, group_width, se_ratio, name):
    """X-block (1x1 -> grouped 3x3 -> [SE] -> 1x1, projection shortcut) + ReLU."""
    L = import_keras().layers
    w_in = x.shape[-1]
    groups = w_out // group_width  # bottleneck multiplier 1
    h = _conv_bn_act(x, w_out, 1, name=f"{name}_a")
    h = _conv_bn_act(h, w_out, 3, strides, groups=groups, name=f"{name}_b")
    if se_ratio:
        h = _squeeze_excite(h, int(round(se_ratio * w_in)), act="relu", gate="sigmoid",
                            name=name)
    h = _conv_bn_act(h, w_out, 1, act=None, name=f"{name}_c")
    if w_in != w_out or strides != 1:
        sc = _conv_bn_act(x, w_out, 1, strides, act=None, name=f"{name}_proj")
    else:
        sc = x
    h = L.Add(name=f"{name}_add")([sc, h])
    return L.ReLU(name=f"{name}_out")(h)


def _build_regnet(size: str):
    keras = import_keras()
    L = keras.layers
    inp = _inp("k_regnet", size)
    if size == "tiny":  # groups 2/4/8/16 per stage
        stem, widths, depths, classes = 16, (16, 32, 64, 128), (1, 2, 1, 1), 10
    else:  # torchvision regnet_y_400mf
        stem, widths, depths, classes = 32, (48, 104, 208, 440), (1, 3, 6, 6), 1000
    x = _conv_bn_act(inp, stem, 3, 2, name="stem")
    for si, (w, n) in enumerate(zip(widths, depths)):
        for bi in range(n):
            x = _regnet_block(x, w, 2 if bi == 0 else 1, 8, 0.25, name=f"s{si + 1}b{bi + 1}")
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(classes, name="output")(x)
    return keras.Model(inp, out, name=f"k_regnet_{size}")


# --------------------------------------------------------------------------- #
# k_shufflenet_v2
# --------------------------------------------------------------------------- #
def _channel_shuffle(x, groups, name):
    """NHWC channel shuffle: Reshape(h, w, g, c/g) -> swap last two -> Reshape."""
    L = import_keras().layers
    _, h, w, c = x.shape
    x = L.Reshape((h, w, groups, c // groups), name=f"{name}_shuffle_split")(x)
    x = L.Permute((1, 2, 4, 3), name=f"{name}_shuffle_perm")(x)
    return L.Reshape((h, w, c), name=f"{name}_shuffle_merge")(x)


def _shuffle_unit(x, out_c, strides, name):
    keras = import_keras()
    L = keras.layers
    bf = out_c // 2
    if strides == 1:
        # torch.chunk(2, dim=1) -> keras.ops.split (tf.split -> ONNX Split)
        x1, x2 = keras.ops.split(x, 2, axis=-1)
    else:
        x1 = _dw_bn_act(x, 3, strides, act=None, name=f"{name}_br1")
        x1 = _conv_bn_act(x1, bf, 1, name=f"{name}_br1_pw")
        x2 = x
    h = _conv_bn_act(x2, bf, 1, name=f"{name}_br2_pw1")
    h = _dw_bn_act(h, 3, strides, act=None, name=f"{name}_br2")
    h = _conv_bn_act(h, bf, 1, name=f"{name}_br2_pw2")
    out = L.Concatenate(axis=-1, name=f"{name}_concat")([x1, h])
    return _channel_shuffle(out, 2, name)


def _build_shufflenet_v2(size: str):
    keras = import_keras()
    L = keras.layers
    inp = _inp("k_shufflenet_v2", size)
    if size == "tiny":
        repeats, chans, classes = (2, 2, 2), (8, 16, 32, 64, 256), 10
    else:  # ShuffleNetV2 x1.0
        repeats, chans, classes = (4, 8, 4), (24, 116, 232, 464, 1024), 1000
    x = _conv_bn_act(inp, chans[0], 3, 2, name="stem")
    x = L.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for si, (n, c) in enumerate(zip(repeats, chans[1:4])):
        for bi in range(n):
            x = _shuffle_unit(x, c, 2 if bi == 0 else 1, name=f"s{si + 2}u{bi + 1}")
    x = _conv_bn_act(x, chans[-1], 1, name="conv5")
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(classes, name="output")(x)
    return keras.Model(inp, out, name=f"k_shufflenet_v2_{size}")


# --------------------------------------------------------------------------- #
# registry / public API
# --------------------------------------------------------------------------- #
_BUILDERS: dict[str, Callable[[str], "keras.Model"]] = {
    "k_simple_cnn": _build_simple_cnn,
    "k_resnet": _build_resnet,
    "k_mobilenet_v2": _build_mobilenet_v2,
    "k_densenet": _build_densenet,
    "k_inception": _build_inception,
    "k_unet": _build_unet,
    "k_separable": _build_separable,
    "k_resnet50": _build_resnet50,
    "k_resnext": _build_resnext,
    "k_mobilenet_v3": _build_mobilenet_v3,
    "k_efficientnet": _build_efficientnet,
    "k_squeezenet": _build_squeezenet,
    "k_regnet": _build_regnet,
    "k_shufflenet_v2": _build_shufflenet_v2,
}


def _randomize_stats(model, seed: int = SEED) -> None:
    """Give BN layers non-trivial stats and Conv/Dense biases non-zero values."""
    import numpy as np

    keras = import_keras()
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
            if layer.beta is not None:
                layer.beta.assign(rng.normal(0.0, 0.1, c).astype("float32"))
            layer.moving_mean.assign(rng.normal(0.0, 0.1, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
        else:
            bias = getattr(layer, "bias", None)
            if bias is not None and hasattr(bias, "assign"):
                bias.assign(rng.normal(0.0, 0.05, tuple(bias.shape)).astype("float32"))


def _make_entry(name: str) -> Callable[[str], "keras.Model"]:
    def builder(size: str = "tiny") -> "keras.Model":
        _check_size(size)
        keras = import_keras()
        keras.utils.set_random_seed(SEED)
        model = _BUILDERS[name](size)
        _randomize_stats(model)
        return model

    builder.__name__ = f"build_{name}"
    builder.__qualname__ = builder.__name__
    builder.__doc__ = f"Build {name!r} (random init, seed {SEED}) in the given size."
    return builder


KERAS_ZOO: dict[str, Callable[[str], "keras.Model"]] = {n: _make_entry(n) for n in _BUILDERS}


def build(name: str, size: str = "tiny") -> "keras.Model":
    """Build zoo model ``name`` in ``size`` ("tiny" or "full"); deterministic."""
    if name not in KERAS_ZOO:
        raise KeyError(f"unknown keras zoo model {name!r}; known: {sorted(KERAS_ZOO)}")
    return KERAS_ZOO[name](size)


def input_shape(name: str, size: str = "tiny") -> tuple[int, ...]:
    """NHWC input shape with batch 1 (no TensorFlow import)."""
    if name not in _INPUT_SHAPES:
        raise KeyError(f"unknown keras zoo model {name!r}; known: {sorted(_INPUT_SHAPES)}")
    _check_size(size)
    return tuple(_INPUT_SHAPES[name][size])


def param_count(name: str, size: str = "tiny") -> int:
    """Total number of Keras weights (trainable + BN moving stats)."""
    return int(build(name, size).count_params())


def export_model(model, path, *, opset: int = 17) -> pathlib.Path:
    """Convert an (already built) single-input NHWC Keras model to ``path``."""
    tf = import_tf()
    import onnx

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = [None, *[int(d) for d in model.inputs[0].shape[1:]]]
    spec = tf.TensorSpec(shape, tf.float32, name="input")
    proto, route = tf2onnx_convert(model, [spec], opset, is_keras=True)
    tidy_io(proto)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "spa.zoo_keras.export_route", route
    onnx.save_model(proto, str(path))
    return path


def export(name: str, path, *, size: str = "tiny", opset: int = 17, model=None) -> pathlib.Path:
    """Build (unless ``model`` is given) and export zoo model ``name`` to ONNX.

    ``path`` is either the ``.onnx`` file to write or a directory, in which case
    the file is ``<path>/<name>_<size>.onnx``.  The ONNX model has one input
    ``"input"`` (NHWC, dynamic batch ``"batch"``) and one output ``"output"``.
    Returns the path of the written file.
    """
    if name not in KERAS_ZOO:
        raise KeyError(f"unknown keras zoo model {name!r}; known: {sorted(KERAS_ZOO)}")
    _check_size(size)
    path = pathlib.Path(path)
    if path.suffix != ".onnx":
        path = path / f"{name}_{size}.onnx"
    if model is None:
        model = build(name, size)
    return export_model(model, path, opset=opset)


if __name__ == "__main__":  # pragma: no cover
    import argparse
    import time

    ap = argparse.ArgumentParser(description="Export the Keras zoo to ONNX")
    ap.add_argument("out_dir")
    ap.add_argument("--size", default="tiny", choices=SIZES)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("names", nargs="*", default=sorted(KERAS_ZOO))
    a = ap.parse_args()
    for n in a.names:
        t0 = time.perf_counter()
        m = build(n, a.size)
        p = export(n, a.out_dir, size=a.size, opset=a.opset, model=m)
        print(f"{n:16s} {a.size:5s} params={m.count_params():>10,d} "
              f"{time.perf_counter() - t0:6.1f}s -> {p}")
