"""torch.hub entry points of `alexnet` (https://pytorch.org/docs/stable/hub.html).

    model = torch.hub.load("OWNER/alexnet", "alexnet", "paper", num_classes=10)
    model = torch.hub.load("OWNER/alexnet", "alexnet", weights="torchvision")
    model = torch.hub.load("path/to/checkout", "alexnet", source="local", weights="run/")

The model's name is the first argument after the entry point's, or `name=`: `model` is
torch.hub.load's own keyword (the entry point), so it cannot reach this function.

A hub checkout is not installed, so this file puts its own `src/` first on sys.path and imports
only the models and the weights loader (no command line, no server).
"""

import os as _os
import sys as _sys

dependencies = ["torch", "torchvision", "numpy", "safetensors"]

_SRC = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "src")
if _SRC not in _sys.path:
    _sys.path.insert(0, _SRC)


def alexnet(name=None, num_classes=None, weights=None, **options):
    """AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012), an `nn.Module`.

    name: "paper" (the two-tower network with LRN, §3; the default without weights), "seed",
        "torchvision" (the 2014 one-weird-trick variant) or "small" (the CIFAR-10-scale CNN).
    num_classes: outputs of the last layer (default 1000, 10 for "small"; with weights, theirs).
    weights: None (random initialisation, training mode), "torchvision" (torchvision's
        ImageNet weights, downloaded once into torch's hub cache), a path (an alexnet
        .safetensors, torchvision's .pth, a run directory, a Hugging Face-style folder) or a
        Hugging Face id "user/name" (needs huggingface_hub). With weights the model comes in
        eval mode on the CPU; a num_classes other than the weights' re-makes the last layer
        (untrained) and says so in a warning.
    options: the model's options (`alexnet summary --model NAME` / `alexnet.get_model`), e.g.
        input_size=227, towers=1, dropout=0.5.
    """
    if weights is None:
        from alexnet.models.registry import get_model

        return get_model(name or "paper", num_classes=num_classes, **options)
    from alexnet.weights import load_for

    return load_for(weights, num_classes, name, **options)
