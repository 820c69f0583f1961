"""MindSpeed-LLM conversion command for the seed layout (MindSpeed-LLM's convert_ckpt.py), and the FP8 checks
and dequantisation on small real safetensors checkpoints written to tmp."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from r1zero.config.load import load_config
from r1zero.engines.megatron.ckpt_convert import (convert_command, dequantize_block, dequantize_checkpoint,
                            fp8_report, layer_flags, read_weight_map, require_bf16,
                            safetensors_header)
from r1zero.host.errors import ConfigError

RECIPE = Path(__file__).resolve().parents[2] / "examples" / "r1_zero_deepseek_671b.yaml"
F8 = torch.float8_e4m3fn


def test_convert_command_for_the_seed_layout():
    cmd = convert_command(load_config(RECIPE), "./hf-bf16", "./model_weights/deepseek3-mcore")
    assert cmd == [
        "python", "convert_ckpt_v2.py", "--load-model-type", "hf", "--save-model-type", "mg",
        "--model-type-hf", "deepseek3", "--load-dir", "./hf-bf16",
        "--save-dir", "./model_weights/deepseek3-mcore",
        "--target-tensor-parallel-size", "4", "--target-pipeline-parallel-size", "6",
        "--target-expert-parallel-size", "16", "--num-layers", "61",
        "--num-layer-list", "9,10,10,10,11,11", "--first-k-dense-replace", "3",
        "--moe-grouped-gemm", "--moe-tp-extend-ep", "--mtp-num-layers", "0"]


def test_convert_command_model_specific_script():
    cmd = convert_command(load_config(RECIPE), "a", "b", dialect="deepseek3",
                          mindspeed_llm_dir="/opt/MindSpeed-LLM", mtp_num_layers=1)
    assert cmd[1] == "/opt/MindSpeed-LLM/examples/mcore/deepseek3/convert_ckpt_deepseek3.py"
    assert "--load-model-type" not in cmd and cmd[-2:] == ["--mtp-num-layers", "1"]
    with pytest.raises(ConfigError, match="unknown converter dialect 'v3'; known: v2, deepseek3"):
        convert_command(load_config(RECIPE), "a", "b", dialect="v3")


def test_layer_flags():
    assert layer_flags(61, 6, [9, 10, 10, 10, 11, 11], None)[-1] == "9,10,10,10,11,11"
    # 61 layers + 3 noop = 64 = 8 stages x 8
    assert layer_flags(61, 8, None, [61, 62, 63]) == ["--num-layers", "64", "--noop-layers", "61,62,63"]
    with pytest.raises(ConfigError, match=r"61 layers \+ 0 noop layers = 61 do not split evenly "
                                          r"over pipeline_parallel 6"):
        layer_flags(61, 6, None, None)
    with pytest.raises(ConfigError, match="mutually exclusive"):
        layer_flags(61, 6, [9, 10, 10, 10, 11, 11], [61])
    with pytest.raises(ConfigError, match=r"\(6 stages, 62 layers\) does not match pp 6 and 61"):
        layer_flags(61, 6, [9, 10, 10, 10, 11, 12], None)


def _fp8_checkpoint(root: Path) -> Path:
    """Two shards like DeepSeek-V3's release: an fp8 weight whose scale sits in the *other*
    shard, a bf16 norm, and the MTP layer 61; config.json says quant_method fp8."""
    d = root / "fp8"
    d.mkdir()
    w = torch.tensor([[1.0, 2.0, 0.5], [4.0, -1.0, 0.25], [0.5, 1.0, 2.0]]).to(F8)
    save_file({"model.layers.0.mlp.down_proj.weight": w,
               "model.layers.0.input_layernorm.weight": torch.ones(3, dtype=torch.bfloat16)},
              str(d / "model-00001-of-00002.safetensors"))
    save_file({"model.layers.0.mlp.down_proj.weight_scale_inv": torch.tensor([[1.0, 10.0], [100.0, 1000.0]]),
               "model.layers.61.enorm.weight": torch.ones(3, dtype=torch.bfloat16)},
              str(d / "model-00002-of-00002.safetensors"))
    weight_map = {"model.layers.0.mlp.down_proj.weight": "model-00001-of-00002.safetensors",
                  "model.layers.0.input_layernorm.weight": "model-00001-of-00002.safetensors",
                  "model.layers.0.mlp.down_proj.weight_scale_inv": "model-00002-of-00002.safetensors",
                  "model.layers.61.enorm.weight": "model-00002-of-00002.safetensors"}
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (d / "config.json").write_text(json.dumps({"num_hidden_layers": 61, "quantization_config": {
        "quant_method": "fp8", "weight_block_size": [128, 128]}}))
    (d / "tokenizer.json").write_text("{}")
    return d


def test_safetensors_header_reads_dtypes(tmp_path):
    d = _fp8_checkpoint(tmp_path)
    header = safetensors_header(d / "model-00001-of-00002.safetensors")
    assert header["model.layers.0.mlp.down_proj.weight"]["dtype"] == "F8_E4M3"
    assert header["model.layers.0.input_layernorm.weight"]["dtype"] == "BF16"
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 16)
    with pytest.raises(ConfigError, match="bad.safetensors: not a safetensors file"):
        safetensors_header(bad)


def test_fp8_report_and_refusal(tmp_path):
    d = _fp8_checkpoint(tmp_path)
    rep = fp8_report(d)
    assert rep.fp8_tensors == ("model.layers.0.mlp.down_proj.weight",)
    assert rep.scale_keys == ("model.layers.0.mlp.down_proj.weight_scale_inv",)
    assert rep.quant_method == "fp8" and rep.mtp_layers == (61,) and rep.needs_dequant
    with pytest.raises(ConfigError) as exc:
        require_bf16(d)
    msg = str(exc.value)
    assert msg.startswith(f"{d}: FP8 checkpoint: 1 of 4 tensors are float8 with 1 block scales")
    assert "'model.layers.0.mlp.down_proj.weight_scale_inv'" in msg and "dequantise to bf16" in msg


def test_dequantize_block_by_hand():
    # block 2 over a 3x3 weight: scales [[1, 10], [100, 1000]] cover rows {0,1},{2} x cols {0,1},{2}
    w = torch.tensor([[1.0, 2.0, 0.5], [4.0, -1.0, 0.25], [0.5, 1.0, 2.0]]).to(F8)
    out = dequantize_block(w, torch.tensor([[1.0, 10.0], [100.0, 1000.0]]), block=2)
    assert out.dtype == torch.bfloat16
    assert out.float().tolist() == [[1.0, 2.0, 5.0], [4.0, -1.0, 2.5], [50.0, 100.0, 2000.0]]
    with pytest.raises(ValueError, match=r"scale shape \(1, 1\) does not tile a 3x3 weight"):
        dequantize_block(w, torch.ones(1, 1), block=2)


def test_dequantize_checkpoint_gives_a_bf16_copy(tmp_path):
    src = _fp8_checkpoint(tmp_path)
    dst = tmp_path / "bf16"
    assert dequantize_checkpoint(src, dst, block=2) == 1
    rep = require_bf16(dst)                                      # passes now
    assert rep.tensors == 3 and rep.mtp_layers == (61,)
    w = load_file(str(dst / "model-00001-of-00002.safetensors"))["model.layers.0.mlp.down_proj.weight"]
    assert w.float().tolist() == [[1.0, 2.0, 5.0], [4.0, -1.0, 2.5], [50.0, 100.0, 2000.0]]
    assert "quantization_config" not in json.loads((dst / "config.json").read_text())
    assert (dst / "tokenizer.json").exists()


def test_single_file_checkpoint_without_index(tmp_path):
    save_file({"lm_head.weight": torch.zeros(2, 2, dtype=torch.bfloat16)}, str(tmp_path / "model.safetensors"))
    assert read_weight_map(tmp_path) == {"lm_head.weight": "model.safetensors"}
    assert not require_bf16(tmp_path).needs_dequant
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ConfigError, match="no model.safetensors.index.json and 2 .safetensors files"):
        read_weight_map(tmp_path)
