"""Loading checkpoints straight into int8 modules (model_core/quantize_load.py, quantize_gguf.py).

The reference is the offline conversion: load the float model, then ``quantize_model_int8``. Loading
straight to int8 must give the same int8 weights and scales — bit for bit from safetensors and from
GGUF tensors of every type the float loader reads, Q8_0 included (read from its int8 blocks, never
as a float matrix; the tiny GGUF's Q8_0 rows are requantised the same way "dequantise, then quantise"
does, see test_quantize.py) — with llama.cpp's q/k row permutation undone on int8 rows and scales.
The bundled model's HF directory is checked the same way, and so is the point of it all: the RSS an
int8 engine load adds is at most 40% of what a float32 load adds (issue 4, check 3).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest
import torch
from gguf import GGMLQuantizationType

from model_core.checkpoint import load_checkpoint
from model_core.errors import CheckpointError
from model_core.quantize import Int8Embedding, Int8Linear, quantize_model_int8, resident_bytes
from model_core.quantize_load import load_checkpoint_int8
from tests.model_core.test_gguf import tiny_gguf  # noqa: F401 - the fixture, written with llama.cpp's writer

BUNDLED = Path(__file__).resolve().parents[2] / "var" / "models" / "smollm2-135m-instruct"


def test_gguf_loads_straight_to_the_int8_of_the_float_model(tiny_gguf) -> None:  # noqa: F811
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(str(tiny_gguf)).tensors}
    assert GGMLQuantizationType.Q8_0 in set(types.values())  # the direct path is exercised
    reference = quantize_model_int8(load_checkpoint(tiny_gguf, progress=False).model)
    checkpoint = load_checkpoint_int8(tiny_gguf, progress=False)
    model = checkpoint.model
    assert checkpoint.format == "gguf"
    assert not [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear | torch.nn.Embedding)]
    assert isinstance(model.embed, Int8Embedding) and isinstance(model.layers[0].attn.wqkv, Int8Linear)
    ref, mine = reference.state_dict(), model.state_dict()
    assert set(ref) == set(mine)
    differ = [k for k in ref if not torch.equal(ref[k], mine[k])]
    assert differ == [], differ
    ids = torch.tensor([[1, 50, 300, 7, 9]])
    pos = torch.arange(5)[None]
    with torch.inference_mode():
        assert torch.equal(model(ids, pos), reference(ids, pos))
    assert resident_bytes(model) == resident_bytes(reference)


def test_q8_0_tensors_are_not_dequantised(tiny_gguf, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The Q8_0 tensors never pass through gguf's float dequantiser on the int8 path."""
    import model_core.quantize_gguf as qg

    seen: list = []
    real = qg.dequantize

    def spy(data, qtype):  # noqa: ANN001, ANN202
        seen.append(qtype)
        return real(data, qtype)

    monkeypatch.setattr(qg, "dequantize", spy)
    load_checkpoint_int8(tiny_gguf, progress=False)
    assert seen and GGMLQuantizationType.Q8_0 not in seen


def test_a_broken_checkpoint_names_the_problem(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint_int8(tmp_path / "missing", progress=False)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    with pytest.raises(CheckpointError, match="GGUF"):
        load_checkpoint_int8(bad, progress=False)


def test_bundled_directory_loads_straight_to_the_int8_of_the_float_model() -> None:
    """The HF directory is read row block by row block into the int8 modules; the result is bit for
    bit the offline conversion of the float model (fused q/k/v and gate/up rows included)."""
    if not (BUNDLED / "config.json").is_file():
        pytest.skip("bundled model missing: run `python -m model_core prepare-bundled`")
    reference = quantize_model_int8(load_checkpoint(BUNDLED, progress=False).model).state_dict()
    mine = load_checkpoint_int8(BUNDLED, progress=False).model.state_dict()
    assert set(mine) == set(reference)
    assert [k for k in reference if not torch.equal(mine[k], reference[k])] == []


_RSS_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
import torch
from model_core import Engine
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS"))
before = rss()
engine = Engine.load({model!r}, progress=False, quantize={quantize!r})
print(json.dumps(rss() - before))
"""


def test_int8_engine_load_adds_at_most_40_percent_of_the_float_rss() -> None:
    """The resident memory an engine load adds (fresh process each) falls by >= 60% with int8:
    the checkpoint is quantised tensor by tensor, so no float model is ever resident."""
    import subprocess
    import sys

    if not (BUNDLED / "config.json").is_file():
        pytest.skip("bundled model missing: run `python -m model_core prepare-bundled`")

    children = [subprocess.Popen([sys.executable, "-c", _RSS_CHILD.format(
        root=str(BUNDLED.parents[2]), model=str(BUNDLED), quantize=quantize)], stdout=subprocess.PIPE, text=True)
        for quantize in (None, "int8")]  # side by side: RSS is per process, and it halves the wait
    outputs = [child.communicate(timeout=600)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0]
    fp_added, q8_added = (int(out.strip().splitlines()[-1]) for out in outputs)
    assert q8_added <= 0.4 * fp_added, (fp_added, q8_added)


_IMPORT_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
import torch
if "sympy" in sys.modules:
    print(json.dumps("torch imports sympy itself"))
    raise SystemExit(0)
from model_core.checkpoint import allocate_model
from model_core.config import config_from_hf
from model_core.quantize_load import int8_model_skeleton
config = config_from_hf({hf!r})
fp, q8 = allocate_model(config, torch.float32, "cpu"), int8_model_skeleton(config, torch.float32)
tensors = [*fp.parameters(), *fp.buffers(), *q8.parameters(), *q8.buffers()]
print(json.dumps({{"meta": sum(t.device.type == "meta" for t in tensors),
                  "tied": [fp.lm_head.weight is fp.embed.weight, q8.lm_head.weight is q8.embed.weight],
                  "imported": [m for m in ("sympy", "torch.fx.experimental.symbolic_shapes") if m in sys.modules]}}))
"""


def test_building_a_model_imports_no_symbolic_shape_machinery() -> None:
    """Both skeletons (float: ``allocate_model``; int8: ``int8_model_skeleton``) come from the meta device
    without parameter init and without ``Module.to_empty``: ``nn.Embedding``'s ``normal_`` and
    ``empty_like`` of a meta tensor run through torch._refs, whose first use imports sympy and
    torch.fx's symbolic shapes, ~70 MB of resident modules that were most of the "unexplained" RSS of an
    int8 engine (benchmarks/engine.py --suite batching). Fresh process: sys.modules is per process."""
    import json
    import subprocess
    import sys

    hf = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 2048,
          "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
    out = subprocess.run([sys.executable, "-c", _IMPORT_CHILD.format(root=str(BUNDLED.parents[2]), hf=hf)],
                         capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result == "torch imports sympy itself":
        pytest.skip(result)
    assert result == {"meta": 0, "tied": [True, True], "imported": []}
