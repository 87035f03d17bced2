"""Which devices a panel offers and what it says about them (CPU/GPU indicator, as careamics-napari shows).

``cuda`` is offered only where torch sees a CUDA device (``cuda:N`` too when there are several), and
the indicator names what ``auto`` will use, so nobody picks a GPU the machine does not have.
"""

from __future__ import annotations

import functools

__all__ = ["cuda_names", "device_choices", "device_summary", "has_cuda"]


@functools.lru_cache(maxsize=1)
def cuda_names() -> tuple[str, ...]:
    """The names of the CUDA devices torch sees (empty without a usable CUDA runtime)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return ()
        return tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except Exception:  # a broken driver: as if there were no GPU
        return ()


def has_cuda() -> bool:
    """Whether torch sees a CUDA device."""
    return bool(cuda_names())


def device_choices() -> tuple[str, ...]:
    """``auto`` and ``cpu``, plus ``cuda`` (and ``cuda:0`` ... ``cuda:N-1`` with several GPUs) when present."""
    names = cuda_names()
    if not names:
        return ("auto", "cpu")
    return ("auto", "cpu", "cuda") + (tuple(f"cuda:{i}" for i in range(len(names))) if len(names) > 1 else ())


def device_summary() -> tuple[str, str]:
    """``(indicator text, tooltip)``: what ``auto`` runs on."""
    import torch

    names = cuda_names()
    if names:
        text = f"GPU · {names[0]}" + (f" (+{len(names) - 1})" if len(names) > 1 else "")
        tip = (f"'auto' runs on CUDA: {', '.join(names)} (torch {torch.__version__}). Default steps are the "
               "task's own, sized to converge.")
        return text, tip
    threads = torch.get_num_threads()
    text = f"CPU · {threads} thread{'s' if threads != 1 else ''} (no CUDA GPU)"
    tip = (f"torch {torch.__version__} sees no CUDA device, so runs use the CPU and the default steps are sized "
           "for about a minute per sample (the PINN also runs narrower); install a CUDA build of torch to use a GPU.")
    return text, tip
