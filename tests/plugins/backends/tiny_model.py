"""A tiny random Qwen2 causal LM and word-level tokenizer saved to a directory, for the device
tests (GPU / NPU) that need a real HF model directory without downloading one."""

from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM


def build_tiny_causal_lm(root: Path, seed: int = 0):
    """-> (model_dir, tokenizer): 32-token vocab, hidden 16, one layer; ids 0 pad, 1 bos, 2 eos."""
    import torch

    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, **{f"w{i}": i for i in range(3, 32)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>",
                                        bos_token="<bos>", eos_token="<eos>")
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    model_dir = Path(root) / "tiny_qwen2"
    Qwen2ForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir, tokenizer
