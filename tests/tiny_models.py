"""Tiny random-weight models built inside the tests, saved and loaded with ``from_pretrained``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Blaze serves language models behind one endpoint, with routing and caching.",
    "A quick brown fox jumps over the lazy dog; numbers 0 1 2 3 4 5 6 7 8 9.",
    "Hello world! How are you today? I am fine, thank you. Ünïcödé ✓ 東京 🙂",
] * 20


def build_tiny_llama(folder: Path, *, context_window: int = 256, seed: int = 0) -> Path:
    """Write a 2-layer random Llama and a byte-level BPE tokenizer with a chat template.

    The end-of-sequence row of the output layer is zeroed, so greedy decoding never ends on its
    own: generation lengths are set by ``max_tokens`` and stop sequences, which makes them exact.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(_CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context_window,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id].zero_()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    return folder


def build_tiny_stable_diffusion(folder: Path, *, seed: int = 0) -> Path:
    """Write a tiny random Stable Diffusion pipeline (as in diffusers' own tests) to ``folder``.

    UNet2DConditionModel and AutoencoderKL with ``block_out_channels=(4, 8)``, a 2-layer
    CLIPTextModel, and a CLIP tokenizer with a byte-level vocabulary made here (no merges). The VAE
    halves the size (latent 32x32 for a 64x64 image) and tiles above 32 pixels, so 64x64
    images exercise ``vae_tiling``. Default size: 64x64.
    """
    import torch
    from diffusers import StableDiffusionPipeline

    tokenizer = _byte_clip_tokenizer()
    torch.manual_seed(seed)
    unet = _tiny_unet()  # drawn in this order from the seed
    vae = _tiny_vae()
    text_encoder = _tiny_clip_text_model(tokenizer)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_ddim_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder / "pipeline")
    return folder / "pipeline"


def _byte_clip_tokenizer() -> Any:
    """A CLIP tokenizer with one symbol per byte (and its end-of-word form), no merges."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    words = ["<|startoftext|>", "<|endoftext|>", *symbols, *(s + "</w>" for s in symbols)]
    tokenizer = CLIPTokenizer(vocab={w: i for i, w in enumerate(words)}, merges=[])
    tokenizer.model_max_length = 77
    return tokenizer


def _tiny_unet() -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=2,
    )


def _tiny_vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(4, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=2,
        sample_size=32,
    )


def _tiny_clip_text_model(tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
        )
    )


def _ddim_scheduler() -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
