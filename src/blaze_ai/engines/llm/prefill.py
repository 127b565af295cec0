"""Run prompts through a causal LM for prefill: alone, or several packed into one forward pass.

- :meth:`PromptRunner.run_one` runs one prompt (or a chunk of it) after the states of its
  start, as ``generate`` would.
- :meth:`PromptRunner.run_packed` runs several prompts packed into one row without padding: each
  prompt's tokens attend to its own cached prefix and, causally, to its own tokens through a
  block-diagonal 4D mask, with each prompt's own position ids (as in packed training; vLLM's
  varlen prefill does the same on GPU). On a CPU a forward pass over a few tokens costs about as
  much as one over a hundred (the matrix products are bound by reading the weights), so prompts
  prefilled together cost far less than one after another. Prompts that reuse the same prefix
  share its columns.

Both return the logits of each prompt's last token, ``(prompts, vocab)`` float32, and each
prompt's keys and values per layer, ``(1, kv_heads, tokens, head_dim)``, compact (not views of a
larger buffer), ready for the prefix cache and the running batch.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Sequence
from typing import Any

import torch

from blaze_ai.engines.llm.kv_cache import GrowableLayer, new_cache
from blaze_ai.engines.llm.prefix_cache import LayerStates, PrefixHit


class PromptRunner:
    """Prefill forward passes of one model.

    Args:
        model: a ``transformers`` causal LM in eval mode (called under ``torch.inference_mode``).
        device: the model's device.

    Attributes:
        packing: True when several prompts may share a forward pass (see :func:`can_pack`).
        cache_kwarg: the name of the model's cache argument.
        last_logits_only: the model takes ``logits_to_keep``.
    """

    def __init__(self, model: Any, *, device: torch.device) -> None:
        self._model = model
        self._device = device
        self._dtype = getattr(model, "dtype", torch.float32)
        self.packing = can_pack(getattr(model, "config", None))
        forward = inspect.signature(model.forward).parameters
        self.cache_kwarg = "cache" if "cache" in forward else "past_key_values"
        self.last_logits_only = "logits_to_keep" in forward

    def run_one(
        self, prompt_ids: Sequence[int], hit: PrefixHit | None, end: int
    ) -> tuple[torch.Tensor, list[LayerStates]]:
        """Tokens up to ``end`` of one prompt after ``hit`` (the states of its first tokens):
        the plain causal forward of ``generate``.

        Returns:
            The logits after token ``end - 1``, ``(1, vocab)``, and the states of tokens
            ``[0, end)`` per layer.

        Raises:
            Exception: whatever the model raises.
        """
        reused = hit.tokens if hit is not None else 0
        cache = new_cache(hit.layers if hit is not None else ())
        kwargs: dict[str, Any] = {self.cache_kwarg: cache, "use_cache": True}
        if self.last_logits_only:
            kwargs["logits_to_keep"] = 1
        prompt = torch.tensor([prompt_ids[reused:end]], device=self._device)
        logits = self._model(input_ids=prompt, **kwargs).logits[:, -1, :].float()
        layers = [(_own(layer.keys), _own(layer.values)) for layer in _layers(cache)]
        return logits, layers

    def run_packed(
        self, prompts: Sequence[Sequence[int]], hits: Sequence[PrefixHit | None]
    ) -> tuple[torch.Tensor, list[list[LayerStates]]]:
        """Several prompts packed into one row, without padding: each prompt's tokens attend to
        its own cached prefix and, causally, to its own tokens (a block-diagonal 4D mask).
        Prompts that reuse the same prefix (a shared system prompt) share its columns.

        Args:
            prompts: token ids of each prompt.
            hits: per prompt, the states of its first tokens (None: none), leaving at least one
                token to run.

        Returns:
            The logits after each prompt's last token, ``(prompts, vocab)``, and each prompt's
            states per layer.

        Raises:
            Exception: whatever the model raises.
        """
        shared, slots = _shared_prefixes(prompts, hits)
        reused = [hit.tokens if hit is not None else 0 for hit in hits]
        suffixes = [prompt[m:] for prompt, m in zip(prompts, reused, strict=True)]
        lengths = [len(s) for s in suffixes]
        cache = _shared_prefix_cache(shared)
        mask = _block_diagonal_mask(shared, slots, lengths, self._dtype)
        positions = torch.cat(
            [torch.arange(m, m + n) for m, n in zip(reused, lengths, strict=True)]
        )
        ends = torch.cumsum(torch.tensor(lengths), 0) - 1
        kwargs: dict[str, Any] = {self.cache_kwarg: cache, "use_cache": True}
        if self.last_logits_only:
            kwargs["logits_to_keep"] = ends.to(self._device)
        output = self._model(
            input_ids=torch.tensor([[t for s in suffixes for t in s]], device=self._device),
            attention_mask=mask.to(self._device),
            position_ids=positions.unsqueeze(0).to(self._device),
            **kwargs,
        )
        logits = output.logits[0]
        if not self.last_logits_only:
            logits = logits[ends.to(self._device)]
        return logits.float(), _split_states(_layers(cache), shared, slots, reused, lengths)


def _shared_prefixes(
    prompts: Sequence[Sequence[int]], hits: Sequence[PrefixHit | None]
) -> tuple[list[PrefixHit], list[int]]:
    """The distinct cached prefixes of ``prompts`` (prompts that reuse the same prefix share
    one), and per prompt the slot of its prefix among them (-1: it reuses nothing)."""
    prefixes: dict[tuple[int, ...], int] = {}  # prefix tokens -> slot
    shared: list[PrefixHit] = []
    slots: list[int] = []
    for prompt, hit in zip(prompts, hits, strict=True):
        if hit is None:
            slots.append(-1)
            continue
        key = tuple(prompt[: hit.tokens])
        if key not in prefixes:
            prefixes[key] = len(shared)
            shared.append(hit)
        slots.append(prefixes[key])
    return shared, slots


def _shared_prefix_cache(shared: Sequence[PrefixHit]) -> Any:
    """A cache holding the states of the ``shared`` prefixes one after another, per layer
    (``(1, kv_heads, sum of their tokens, head_dim)``); empty when there are none."""
    layer_count = len(shared[0].layers) if shared else 0
    return new_cache(
        [
            (
                torch.cat([hit.layers[i][0] for hit in shared], dim=2),
                torch.cat([hit.layers[i][1] for hit in shared], dim=2),
            )
            for i in range(layer_count)
        ]
    )


def _block_diagonal_mask(
    shared: Sequence[PrefixHit], slots: Sequence[int], lengths: Sequence[int], dtype: torch.dtype
) -> torch.Tensor:
    """The additive 4D attention mask of a packed row, ``(1, 1, new, past + new)``: each new
    token (``lengths`` per prompt) sees its prompt's shared prefix (``slots``) and, causally,
    its own prompt's new tokens; everything else is ``dtype``'s lowest value."""
    past = sum(hit.tokens for hit in shared)
    new = sum(lengths)
    slot_of_past = torch.repeat_interleave(
        torch.arange(len(shared)),
        torch.tensor([hit.tokens for hit in shared], dtype=torch.long),
    )
    owner_new = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    slot_of_new = torch.tensor(slots)[owner_new]
    causal = torch.ones(new, new, dtype=torch.bool).tril()
    allowed = torch.cat(
        [
            slot_of_new[:, None] == slot_of_past[None, :],
            (owner_new[:, None] == owner_new[None, :]) & causal,
        ],
        dim=1,
    )
    mask = torch.zeros(1, 1, new, past + new, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask


def _split_states(
    layers: Sequence[GrowableLayer],
    shared: Sequence[PrefixHit],
    slots: Sequence[int],
    reused: Sequence[int],
    lengths: Sequence[int],
) -> list[list[LayerStates]]:
    """Each prompt's own states out of a packed row's cache: the ``reused`` tokens of its shared
    prefix (slot ``slots[i]``) followed by its ``lengths[i]`` new tokens, compact, per layer."""
    past = sum(hit.tokens for hit in shared)
    slot_starts = [sum(hit.tokens for hit in shared[:i]) for i in range(len(shared))]
    ends = [past + end for end in itertools.accumulate(lengths)]
    states: list[list[LayerStates]] = []
    for index, slot in enumerate(slots):
        begin, end = ends[index] - lengths[index], ends[index]
        prefix = (slot_starts[slot], slot_starts[slot] + reused[index]) if slot >= 0 else None
        states.append(
            [
                (
                    _prompt_states(layer.keys, prefix, begin, end),
                    _prompt_states(layer.values, prefix, begin, end),
                )
                for layer in layers
            ]
        )
    return states


def _prompt_states(
    tensor: torch.Tensor | None, prefix: tuple[int, int] | None, begin: int, end: int
) -> torch.Tensor:
    """Columns ``prefix`` (if any) then ``[begin, end)`` of a layer's keys or values, as one
    new tensor."""
    assert tensor is not None
    parts = [tensor[:, :, begin:end]]
    if prefix is not None:
        parts.insert(0, tensor[:, :, prefix[0] : prefix[1]])
    return torch.cat(parts, dim=2)


def can_pack(config: Any) -> bool:
    """True when prompts packed into one row with a 4D mask compute what they would alone: every
    layer attends to the whole past (no sliding window, chunked or linear attention, whose
    limits a custom mask would bypass) through a kernel that takes a 4D mask."""
    if getattr(config, "_attn_implementation", "eager") not in ("sdpa", "eager"):
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    if getattr(config, "attention_chunk_size", None):
        return False
    layer_types = getattr(config, "layer_types", None)
    return not layer_types or all(kind == "full_attention" for kind in layer_types)


def _layers(cache: Any) -> list[GrowableLayer]:
    layers = list(cache.layers)
    for layer in layers:
        assert isinstance(layer, GrowableLayer) and layer.keys is not None
    return layers


def _own(states: torch.Tensor | None) -> torch.Tensor:
    """A compact copy of ``states`` (not a view that keeps a larger buffer alive)."""
    assert states is not None
    return states.clone()
