"""LoRA adapters on the ``onnx`` fast path (the runtime's multi-LoRA API).

The converted model is rewritten once into a *LoRA-ready* copy: beside every projection a LoRA
adapter of the given target modules can change (attention q/k/v/o, MLP gate/up/down), a pair of
MatMuls ``x·A·B`` added to the projection's output, whose ``A`` and ``B`` are graph inputs that
default to empty (rank 0) tensors. With no adapter active the copy therefore adds exact zeros to
the base model's projections; the rank is free per adapter. A user's adapter (the PEFT tensors
trained today) becomes a set of those inputs: ``A``, and ``B`` with LoRA's ``alpha / rank``
folded in. Where the converted model packs q, k and v into one MatMul, their ``A``s sit side by
side and their ``B``s fill the packed output's column blocks. The runtime activates one adapter
per generator, so answers with and without adapters share the one loaded model.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from p13n.errors import AdapterMismatchError, LLMError
from p13n.llm.onnx import (
    MANIFEST,
    OnnxLLM,
    Precision,
    built_once,
    file_sha256,
    runtime_version,
)

LORA_FORMAT = 1
SLOTS = "p13n-lora-slots.json"
PROJECTION_NODE = re.compile(r"^/model/layers\.(\d+)/(attn|mlp)/([a-z_]+_proj)/MatMul")
PEFT_TENSOR = re.compile(r"layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+_proj)\.lora_([AB])\.weight$")
# PEFT's module path → the converted graph's block names.
BLOCKS = {"self_attn": "attn", "mlp": "mlp"}


@dataclass(frozen=True)
class Projection:
    """One projection of the converted graph with a LoRA pair beside it."""

    layer: int
    block: str
    name: str
    in_features: int
    out_features: int
    parts: dict[str, tuple[int, int]]
    """PEFT module name → the output columns it fills (several when the graph packs q/k/v)."""

    @property
    def key(self) -> str:
        return f"layers.{self.layer}.{self.block}.{self.name}"

    @property
    def inputs(self) -> tuple[str, str]:
        return f"p13n.lora.{self.key}.A", f"p13n.lora.{self.key}.B"


def _parts(name: str, out_features: int, heads: dict[str, int]) -> dict[str, tuple[int, int]]:
    if name == "qkv_proj":
        q = heads["num_attention_heads"] * heads["head_size"]
        kv = heads["num_key_value_heads"] * heads["head_size"]
        if q + 2 * kv != out_features:
            raise LLMError(f"packed qkv_proj has {out_features} outputs, not q {q} + 2·kv {kv}")
        return {"q_proj": (0, q), "k_proj": (q, q + kv), "v_proj": (q + kv, q + 2 * kv)}
    if name == "gate_up_proj":
        half = out_features // 2
        return {"gate_proj": (0, half), "up_proj": (half, out_features)}
    return {name: (0, out_features)}


def _dims(node: Any, initializers: Mapping[str, Any]) -> tuple[int, int]:
    if node.op_type == "MatMulNBits":
        attributes = {a.name: a.i for a in node.attribute}
        return int(attributes["K"]), int(attributes["N"])
    weight = initializers.get(node.input[1])
    if node.op_type != "MatMul" or weight is None or len(weight.dims) != 2:
        raise LLMError(f"cannot read the weight shape of {node.name} ({node.op_type})")
    return int(weight.dims[0]), int(weight.dims[1])


def _rewrite(model: Any, targets: frozenset[str], heads: dict[str, int]) -> list[Projection]:
    """Add the LoRA pairs to ``model`` (an ``onnx.ModelProto``, in place) beside every
    projection holding one of ``targets``; the projections changed."""
    from onnx import TensorProto, helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    nodes: list[Any] = []
    renamed: dict[str, str] = {}
    projections: list[Projection] = []
    for node in graph.node:
        nodes.append(node)
        match = PROJECTION_NODE.match(node.name)
        if match is None or node.op_type not in ("MatMul", "MatMulNBits"):
            continue
        in_features, out_features = _dims(node, initializers)
        parts = _parts(match[3], out_features, heads)
        if not targets & parts.keys():
            continue
        projection = Projection(int(match[1]), match[2], match[3], in_features, out_features, parts)
        a, b = projection.inputs
        rank = f"lora_rank_{len(projections)}"
        graph.input.extend(
            [
                helper.make_tensor_value_info(a, TensorProto.FLOAT, [in_features, rank]),
                helper.make_tensor_value_info(b, TensorProto.FLOAT, [rank, out_features]),
            ]
        )
        # Empty defaults: no adapter active is rank 0, an exact zero added to the projection.
        graph.initializer.extend(
            [
                helper.make_tensor(a, TensorProto.FLOAT, [in_features, 0], []),
                helper.make_tensor(b, TensorProto.FLOAT, [0, out_features], []),
            ]
        )
        base = f"/p13n/lora/{projection.key}"
        output = node.output[0]
        nodes += [
            helper.make_node("MatMul", [node.input[0], a], [f"{base}/xA"], name=f"{base}/A"),
            helper.make_node("MatMul", [f"{base}/xA", b], [f"{base}/xAB"], name=f"{base}/B"),
            helper.make_node("Add", [output, f"{base}/xAB"], [f"{base}/out"], name=f"{base}/Add"),
        ]
        renamed[output] = f"{base}/out"
        projections.append(projection)
    for node in nodes:
        if node.op_type == "Add" and node.name.startswith("/p13n/lora/"):
            continue
        for index, name in enumerate(node.input):
            if name in renamed:
                node.input[index] = renamed[name]
    for output in graph.output:
        if output.name in renamed:
            raise LLMError(f"{output.name} is a graph output; it cannot take a LoRA pair")
    del graph.node[:]
    graph.node.extend(nodes)
    missing = targets - {part for p in projections for part in p.parts}
    if missing:
        raise AdapterMismatchError(
            f"the converted model has no projection for LoRA target(s) {sorted(missing)}"
        )
    return projections


def lora_ready_model(folder: Path, targets: Iterable[str]) -> Path:
    """The LoRA-ready copy of the converted model in ``folder`` for adapters of ``targets``
    (PEFT module names): built once beside it (seconds; the weights are copied)."""
    import onnx

    wanted = frozenset(targets)
    label = ",".join(sorted(wanted))
    expected = {
        "format": LORA_FORMAT,
        "base_manifest_sha256": file_sha256(folder / MANIFEST),
        "targets": sorted(wanted),
        "onnxruntime_genai": runtime_version(),
    }
    target = folder.parent / f"{folder.name}-lora-{hashlib.sha256(label.encode()).hexdigest()[:8]}"

    def build(built: Path, scratch: Path) -> None:
        built.mkdir()
        config = json.loads((folder / "genai_config.json").read_text())
        decoder = config["model"]["decoder"]
        heads = {k: int(decoder[k]) for k in ("head_size", "num_attention_heads")}
        heads["num_key_value_heads"] = int(
            decoder.get("num_key_value_heads", heads["num_attention_heads"])
        )
        filename = decoder["filename"]
        model = onnx.load(str(folder / filename), load_external_data=False)
        projections = _rewrite(model, wanted, heads)
        onnx.save_model(model, str(built / filename))
        for path in folder.iterdir():
            if path.name in (filename, MANIFEST) or not path.is_file():
                continue
            # A copy: checkers refuse hard-linked weights (a known path-traversal trick).
            shutil.copy2(path, built / path.name)
        slots = [asdict(p) for p in projections]
        (built / SLOTS).write_text(json.dumps(slots, indent=1) + "\n")

    return built_once(target, expected, build)


def read_slots(folder: Path) -> list[Projection]:
    rows = json.loads((folder / SLOTS).read_text())
    return [
        Projection(**{**row, "parts": {k: (int(v[0]), int(v[1])) for k, v in row["parts"].items()}})
        for row in rows
    ]


def adapter_inputs(
    state: Mapping[str, np.ndarray], projections: Sequence[Projection], scaling: float
) -> dict[str, np.ndarray]:
    """The LoRA-ready model's inputs for a PEFT adapter's ``state`` (``lora_A``: rank by in,
    ``lora_B``: out by rank); ``scaling`` is its ``alpha / rank``."""
    pairs: dict[tuple[int, str, str], dict[str, np.ndarray]] = {}
    for name, tensor in state.items():
        match = PEFT_TENSOR.search(name)
        if match is None or match[2] not in BLOCKS:
            raise AdapterMismatchError(f"not a LoRA tensor of a known projection: {name!r}")
        key = (int(match[1]), BLOCKS[match[2]], match[3])
        pairs.setdefault(key, {})[match[4]] = np.asarray(tensor, dtype=np.float32)
    inputs: dict[str, np.ndarray] = {}
    for projection in projections:
        present = [
            (part, pairs.pop((projection.layer, projection.block, part)), span)
            for part, span in projection.parts.items()
            if (projection.layer, projection.block, part) in pairs
        ]
        if not present:
            continue
        for part, pair, _ in present:
            if set(pair) != {"A", "B"}:
                raise AdapterMismatchError(f"layer {projection.layer} {part}: A or B is missing")
        a = np.concatenate([pair["A"].T for _, pair, _ in present], axis=1)
        b = np.zeros((a.shape[1], projection.out_features), dtype=np.float32)
        row = 0
        for _, pair, (start, end) in present:
            rank = pair["A"].shape[0]
            if pair["B"].shape != (end - start, rank) or pair["A"].shape[1] != a.shape[0]:
                raise AdapterMismatchError(f"{projection.key}: LoRA shapes do not fit the model")
            b[row : row + rank, start:end] = scaling * pair["B"].T
            row += rank
        if a.shape[0] != projection.in_features:
            raise AdapterMismatchError(f"{projection.key}: LoRA A has the wrong input size")
        name_a, name_b = projection.inputs
        inputs[name_a], inputs[name_b] = np.ascontiguousarray(a), b
    if pairs:
        layer, block, part = next(iter(pairs))
        raise AdapterMismatchError(
            f"the LoRA-ready model has no slot for layer {layer} {block} {part}: "
            "it was built for other target modules"
        )
    return inputs


class OnnxLoraLLM(OnnxLLM):
    """``OnnxLLM`` on the LoRA-ready copy of its model: adapters are loaded by key (the
    ``capacity`` most recently used stay loaded) and one is active at a time (none: exactly the
    base model)."""

    _spaces = itertools.count()

    def __init__(
        self,
        source: str | Path,
        *,
        targets: Iterable[str],
        model_name: str | None = None,
        precision: Precision = "int4",
        capacity: int = 8,
    ) -> None:
        self.targets = tuple(sorted(set(targets)))
        super().__init__(source, model_name=model_name, precision=precision)
        self.projections = read_slots(self.folder)
        self._held: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity
        self.active: str | None = None
        self._adapters_lock = threading.Lock()
        # The runtime's process is shared by every model object on this folder: keys are ours.
        self._space = f"{next(self._spaces)}/"

    def _model_folder(self, converted: Path) -> Path:
        return lora_ready_model(converted, self.targets)

    def holds(self, key: str) -> bool:
        """Whether an adapter is loaded as ``key``."""
        return key in self._held

    def load_adapter(self, key: str, state: Mapping[str, np.ndarray], scaling: float) -> None:
        """Load a PEFT adapter's tensors under ``key`` (a no-op when it is loaded), dropping the
        least recently used one beyond ``capacity``."""
        with self._adapters_lock:
            if key in self._held:
                return
            inputs = adapter_inputs(state, self.projections, scaling)
            self.runtime.load_adapter(self._space + key, inputs)
            self._held[key] = None
            while len(self._held) > self._capacity:
                self._drop(next(iter(self._held)))

    def unload_adapter(self, key: str) -> bool:
        """Drop a loaded adapter; whether it was held."""
        with self._adapters_lock:
            if key not in self._held:
                return False
            self._drop(key)
            return True

    def _drop(self, key: str) -> None:
        if self.active == key:
            self.active = None
        self.runtime.unload_adapter(self._space + key)
        del self._held[key]

    def use(self, key: str | None) -> None:
        """Answer with the adapter loaded as ``key`` from now on (None: the base model)."""
        with self._adapters_lock:
            if key is not None:
                if key not in self._held:
                    raise LLMError(f"adapter {key!r} is not loaded")
                self._held.move_to_end(key)
            self.active = key

    def _adapter(self) -> str | None:
        active = self.active
        return None if active is None else self._space + active
