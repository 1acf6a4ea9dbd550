"""TensorRT 10.x ONNX-parser operator tables, as data (the logic is in :mod:`xvdeploy.export.trt_compat`).

Sources, all from ``onnx/onnx-tensorrt`` (the parser TensorRT ships as ``nvonnxparser``):

* ``docs/operators.md``, TensorRT 10.15 revision ("TensorRT 10.15 supports
  operators in the inclusive range of opset 9 to opset 24"; the 10.0 revision
  said "opset 9 to opset 20"; the copy read had no commit id, it matches the
  10.15 GA Changelog below). :data:`SUPPORTED_OPS` and
  :data:`UNSUPPORTED_OPS` mirror its support matrix (rows marked ``Y`` / ``N``),
  the notes paraphrase its *Restrictions* column.
* ``docs/Changelog.md`` at commit ``dd0a3a9f`` (10.15 GA): the release that
  added an op (:data:`SINCE`), e.g. "10.0 EA: Added support for ``wrap``
  padding mode in ``Pad``", "10.10: Plugin fallback importer now also reads its
  namespace from a Node's domain field".
* ``ModelImporter.cpp`` and ``onnxOpImporters.cpp`` at the same commit, and
  ``importerUtils.cpp`` of a recent 10.x (it knows FP4 and E8M0): the data
  types ``convertDtype`` maps (:data:`TRT_DTYPES`, :data:`NARROWED_DTYPES`),
  the ``Pad`` modes (:data:`PAD_MODES`) and the inputs that must be constant
  (:data:`CONSTANT_INPUTS`).

To follow a new TensorRT release, update these tables, :data:`DOC_VERSION`
and :data:`DOC_SOURCE` together.
"""
from __future__ import annotations

#: TensorRT release of the operator table below.
DOC_VERSION = "10.15"
DOC_SOURCE = "onnx/onnx-tensorrt docs/operators.md (TensorRT 10.15); Changelog.md and importers @ dd0a3a9f"
#: Default-domain opsets documented as supported ("inclusive range of opset 9 to opset 24").
OPSET_MIN, OPSET_MAX = 9, 24
#: TensorRT 10.0's documented maximum ("opset 9 to opset 20"); newer opsets need a newer 10.x.
OPSET_MAX_10_0 = 20
#: Standard ONNX domains other than the default one; TensorRT imports none of their ops.
ONNX_EXTRA_DOMAINS = ("ai.onnx.ml", "ai.onnx.preview.training", "ai.onnx.preview")

#: op_type -> restrictions (operators.md, TensorRT 10.15, rows marked Y); "" where none are listed.
SUPPORTED_OPS: dict[str, str] = {
    "Abs": "", "Acos": "", "Acosh": "", "Add": "", "And": "BOOL only",
    "ArgMax": "", "ArgMin": "", "Asin": "", "Asinh": "", "Atan": "", "Atanh": "",
    "Attention": "Q, K, V and attn_mask 4D; no past_key/past_value/nonpad_kv_seqlen inputs; "
                 "no present_key/present_value/qk_matmul_output outputs; no qk_matmul_output_mode, softcap",
    "AveragePool": "2D or 3D pooling only; dilations empty or all ones",
    "BatchNormalization": "", "BlackmanWindow": "", "Cast": "", "CastLike": "", "Ceil": "", "Celu": "",
    "Clip": "", "Concat": "",
    "Constant": "sparse_value, value_string and value_strings unsupported",
    "ConstantOfShape": "", "Conv": "", "ConvTranspose": "", "Cos": "", "Cosh": "",
    "CumSum": "axis must be a build-time constant",
    "DeformConv": "1D or 2D spatial input; begin and end pads equal per axis",
    "DepthToSpace": "", "DequantizeLinear": "x_zero_point must be zero", "Div": "",
    "Dropout": "is_training must be an initializer evaluating to False",
    "Einsum": "", "Elu": "", "Equal": "", "Erf": "", "Exp": "", "Expand": "",
    "EyeLike": "input must have static dimensions", "Flatten": "", "Floor": "",
    "Gather": "", "GatherElements": "", "GatherND": "", "Gelu": "", "Gemm": "",
    "GlobalAveragePool": "", "GlobalLpPool": "", "GlobalMaxPool": "", "Greater": "", "GreaterOrEqual": "",
    "GridSample": "4D input only", "GroupNormalization": "",
    "GRU": "bidirectional: same activations both directions",
    "HammingWindow": "", "HannWindow": "", "HardSigmoid": "", "HardSwish": "",
    "Hardmax": "axis dimension must be a build-time constant", "Identity": "",
    "If": "branch outputs of equal rank and with different names",
    "ImageScaler": "", "InstanceNormalization": "", "IsInf": "", "IsNaN": "",
    "LayerNormalization": "only the first output Y", "LeakyRelu": "", "Less": "", "LessOrEqual": "",
    "Log": "", "LogSoftmax": "",
    "Loop": "scan output length not dynamic; loop-carried shapes constant across iterations",
    "LRN": "",
    "LSTM": "bidirectional: same activations both directions; input_forget=0; layout=0",
    "LpNormalization": "", "LpPool": "dilations empty or all ones", "MatMul": "", "Max": "",
    "MaxPool": "2D or 3D pooling only; Indices output unsupported; dilations empty or all ones",
    "Mean": "", "MeanVarianceNormalization": "", "Min": "", "Mish": "", "Mod": "", "Mul": "", "Neg": "",
    "NonMaxSuppression": "", "NonZero": "", "Not": "", "OneHot": "depth must be a build-time constant",
    "Or": "", "Pad": "", "ParametricSoftplus": "", "Pow": "", "PRelu": "",
    "QuantizeLinear": "y_zero_point must be 0",
    "RandomNormal": "seed ignored", "RandomNormalLike": "seed ignored",
    "RandomUniform": "seed ignored", "RandomUniformLike": "seed ignored",
    "Range": "", "Reciprocal": "",
    "ReduceL1": "axes must be an initializer", "ReduceL2": "axes must be an initializer",
    "ReduceLogSum": "axes must be an initializer", "ReduceLogSumExp": "axes must be an initializer",
    "ReduceMax": "axes must be an initializer", "ReduceMean": "axes must be an initializer",
    "ReduceMin": "axes must be an initializer", "ReduceProd": "axes must be an initializer",
    "ReduceSum": "axes must be an initializer", "ReduceSumSquare": "axes must be an initializer",
    "Relu": "", "Reshape": "",
    "Resize": "coordinate modes half_pixel, pytorch_half_pixel, tf_half_pixel_for_nn, asymmetric, align_corners; "
              "modes nearest, linear; nearest modes floor, ceil, round_prefer_floor, round_prefer_ceil; "
              "keep_aspect_ratio_policy stretch; tensor scales need iota axes; no antialias",
    "ReverseSequence": "", "RMSNormalization": "",
    "RNN": "bidirectional: same activations both directions",
    "RoiAlign": "", "RotaryEmbedding": "position_ids must be INT64", "Round": "",
    "STFT": "frame_step and window must be initializers; real-valued input",
    "ScaledTanh": "", "Scan": "", "Scatter": "", "ScatterElements": "",
    "ScatterND": "reduction other than none unsupported", "Selu": "", "Shape": "", "Shrink": "",
    "Sigmoid": "", "Sign": "", "Sin": "", "Sinh": "", "Size": "", "Slice": "", "Softmax": "",
    "Softplus": "", "Softsign": "", "SpaceToDepth": "", "Split": "", "Sqrt": "",
    "Squeeze": "axes must be resolvable to a constant", "Sub": "", "Sum": "", "Tan": "", "Tanh": "",
    "TensorScatter": "past_cache and update 4D; axis -2", "ThresholdedRelu": "", "Tile": "",
    "TopK": "sorted must be 1; K below 3840", "Transpose": "", "Trilu": "",
    "Unsqueeze": "axes must be resolvable to a constant", "Upsample": "", "Where": "", "Xor": "BOOL only",
}

#: op_types operators.md (TensorRT 10.15) marks ``N``.
UNSUPPORTED_OPS: frozenset[str] = frozenset({
    "AffineGrid", "Bernoulli", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor", "Col2Im",
    "CenterCropPad", "Compress", "ConcatFromSequence", "ConvInteger", "DFT", "Det", "DynamicQuantizeLinear",
    "ImageDecoder", "MatMulInteger", "MaxRoiPool", "MaxUnpool", "MelWeightMatrix", "Multinomial",
    "NegativeLogLikelihoodLoss", "Optional", "OptionalGetElement", "OptionalHasElement", "QLinearConv",
    "QLinearMatMul", "RegexFullMatch", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase",
    "SequenceInsert", "SequenceLength", "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence",
    "StringConcat", "StringNormalizer", "StringSplit", "TfIdfVectorizer", "Unique",
})

#: op_type -> first TensorRT 10.x release whose parser imports it (Changelog.md); older 10.x reject it.
SINCE: dict[str, str] = {
    "DeformConv": "10.1", "BlackmanWindow": "10.4", "HammingWindow": "10.4", "HannWindow": "10.4",
    "STFT": "10.5", "Attention": "10.14", "RotaryEmbedding": "10.15", "RMSNormalization": "10.15",
    "TensorScatter": "10.15",
}

#: ONNX data types ``convertDtype`` maps to a TensorRT type (importerUtils.cpp); DOUBLE is narrowed to FLOAT.
TRT_DTYPES = frozenset({"FLOAT", "FLOAT16", "BFLOAT16", "INT8", "UINT8", "BOOL", "INT32", "INT64",
                        "FLOAT8E4M3FN", "INT4", "FLOAT4E2M1"})
NARROWED_DTYPES = {"DOUBLE": "FLOAT"}

#: Pad ``mode`` -> the ISliceLayer SampleMode the importer sets (onnxOpImporters.cpp, Pad).
PAD_MODES = {"constant": "kFILL", "reflect": "kREFLECT", "edge": "kCLAMP", "wrap": "kWRAP"}

RESIZE_COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                           "align_corners")
RESIZE_MODES = ("nearest", "linear")
RESIZE_NEAREST_MODES = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")

#: (op_type, input index) -> (severity if not an initializer/Constant, what the doc requires).
CONSTANT_INPUTS: dict[tuple[str, int], tuple[str, str]] = {
    **{(op, 1): ("error", "axes must be an initializer") for op in (
        "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
        "ReduceProd", "ReduceSum", "ReduceSumSquare")},
    ("STFT", 1): ("error", "frame_step must be an initializer"),
    ("STFT", 2): ("error", "window must be an initializer"),
    ("Dropout", 2): ("error", "is_training must be an initializer evaluating to False"),
    ("OneHot", 1): ("warning", "depth must be a build-time constant"),
    ("CumSum", 1): ("warning", "axis must be a build-time constant"),
    ("Squeeze", 1): ("warning", "axes must be resolvable to a constant"),
    ("Unsqueeze", 1): ("warning", "axes must be resolvable to a constant"),
}
