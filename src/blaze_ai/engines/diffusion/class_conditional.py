"""Class-conditional sampling with classifier-free guidance over a diffusers scheduler.

diffusers' ``DDPMPipeline`` and ``DDIMPipeline`` take no class labels, so a class-conditional
``UNet2DModel`` (one built with ``num_class_embeds``) is sampled by this short loop instead. The
loop is the one those pipelines run, plus classifier-free guidance (Ho & Salimans, 2022,
"Classifier-Free Diffusion Guidance"): each step predicts the noise twice, with the requested
class and with the "null" class the model was trained to see in place of a label, and moves
along ``uncond + guidance_scale * (cond - uncond)``.

Prompts name a class through :class:`ClassLabels`, read from the model folder's
``blaze_classes.json`` (written by ``scripts/train_digits.py``).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from blaze_ai.errors import InvalidRequestError

CLASSES_FILE = "blaze_classes.json"

StepCallback = Callable[[int, int], bool]
"""Called after each step with ``(step, steps)`` (1-based); returning False stops sampling."""


@dataclass(frozen=True, slots=True)
class ClassLabels:
    """The classes a class-conditional model generates, and the words that name them.

    Attributes:
        labels: class names, indexed by class id (``"0"`` .. ``"9"`` for the digits model).
        null_class: the class id that stands for "no class" (classifier-free guidance); it
            has no label.
        aliases: other words for a class (``"seven"`` -> 7).
        defaults: sampling defaults the model was validated with (``steps``, ``guidance_scale``,
            ``eta``, ``scheduler``, ``size``).
    """

    labels: tuple[str, ...]
    null_class: int
    aliases: Mapping[str, int] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> ClassLabels:
        """Read ``folder/blaze_classes.json``.

        Raises:
            OSError: the file cannot be read. ValueError: it is not valid JSON.
        """
        data = json.loads((folder / CLASSES_FILE).read_text(encoding="utf-8"))
        return cls(
            labels=tuple(str(label) for label in data["labels"]),
            null_class=int(data["null_class"]),
            aliases={str(k).lower(): int(v) for k, v in data.get("aliases", {}).items()},
            defaults=dict(data.get("defaults", {})),
        )

    def write(self, folder: Path) -> None:
        """Write ``folder/blaze_classes.json``."""
        data = {
            "labels": list(self.labels),
            "null_class": self.null_class,
            "aliases": dict(self.aliases),
            "defaults": dict(self.defaults),
        }
        (folder / CLASSES_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    def class_of(self, prompt: str) -> int:
        """The one class the prompt names (``"a handwritten digit 7"`` -> 7).

        Words are compared case-insensitively with the labels and aliases.

        Raises:
            InvalidRequestError: (param ``prompt``) the prompt names no class, or several.
        """
        words = set(re.findall(r"[a-z0-9]+", prompt.lower()))
        found = {index for word in words if (index := self._lookup(word)) is not None}
        if len(found) == 1:
            return found.pop()
        known = ", ".join(self.labels)
        what = "names none of them" if not found else "names more than one"
        raise InvalidRequestError(
            f"this model generates one of these classes: {known}; the prompt {what}",
            param="prompt",
        )

    def _lookup(self, word: str) -> int | None:
        for index, label in enumerate(self.labels):
            if label.lower() == word:
                return index
        return self.aliases.get(word)


def sample(
    unet: Any,
    scheduler: Any,
    class_ids: Sequence[int],
    *,
    null_class: int,
    guidance_scale: float,
    steps: int,
    generators: Sequence[torch.Generator],
    eta: float = 0.0,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Sample one image per entry of ``class_ids`` (blocking; run it in a worker thread).

    Args:
        unet: a class-conditional ``UNet2DModel`` in eval mode.
        scheduler: a diffusers scheduler; ``set_timesteps`` is called on it (it is stateful, so
            one sampling at a time per scheduler).
        class_ids: the class of each image (batch size B).
        null_class: the unconditional class id; guidance is skipped when
            ``guidance_scale == 1`` (only the conditional prediction is computed).
        steps: denoising steps.
        generators: one CPU generator per image, so each image depends only on its own seed.
        eta: DDIM's stochasticity (1 = as noisy as DDPM), passed to schedulers that take it.
        on_step: progress callback; returning False stops early (the result is then partial).

    Returns:
        Samples of shape ``[B, C, H, W]`` in ``[-1, 1]``, on the CPU, float32.
    """
    config = unet.config
    shape = (len(class_ids), config.in_channels, config.sample_size, config.sample_size)
    device, dtype = unet.device, unet.dtype
    noise = torch.stack([torch.randn(shape[1:], generator=g) for g in generators])
    x = noise.to(device=device, dtype=dtype) * scheduler.init_noise_sigma
    labels = torch.tensor(list(class_ids), device=device)
    guided = guidance_scale != 1.0
    if guided:
        labels = torch.cat([labels, torch.full_like(labels, null_class)])
    scheduler.set_timesteps(steps, device=device)
    extra = _step_kwargs(scheduler, list(generators), eta)
    with torch.inference_mode():
        for i, t in enumerate(scheduler.timesteps):
            model_input = torch.cat([x, x]) if guided else x
            model_input = scheduler.scale_model_input(model_input, t)
            eps = unet(model_input, t, class_labels=labels).sample
            if guided:
                cond, uncond = eps.chunk(2)
                eps = uncond + guidance_scale * (cond - uncond)
            x = scheduler.step(eps, t, x, **extra).prev_sample
            if on_step is not None and not on_step(i + 1, len(scheduler.timesteps)):
                break
    return x.float().clamp(-1, 1).cpu()


def _step_kwargs(scheduler: Any, generators: list[torch.Generator], eta: float) -> dict[str, Any]:
    """``eta`` and ``generator`` for the schedulers whose ``step`` takes them (as diffusers'
    pipelines do in ``prepare_extra_step_kwargs``)."""
    accepted = inspect.signature(scheduler.step).parameters
    kwargs: dict[str, Any] = {}
    if "eta" in accepted:
        kwargs["eta"] = eta
    if "generator" in accepted:
        kwargs["generator"] = generators if len(generators) > 1 else generators[0]
    return kwargs
