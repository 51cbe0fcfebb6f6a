"""The LRN hyper-parameters as one value, passed between the layer and its kernels (§3.3)."""

from __future__ import annotations

from dataclasses import dataclass

ALPHA_CONVENTIONS = ("paper", "per_size")


@dataclass(frozen=True)
class LRNParams:
    """b_i = a_i / (k + alpha * sum of a_j^2 over the `size` channels centred on i)^beta.

    `alpha` here always multiplies the window sum itself (the paper's convention, §3.3: k=2,
    n=5, alpha=1e-4, beta=0.75); `from_convention` converts Caffe's / torch's alpha, which is
    divided by n. `groups` > 1 normalizes each of that many channel blocks on its own (the
    paper's towers, §3.2).
    """

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0
    groups: int = 1

    def __post_init__(self) -> None:
        if self.size < 1 or self.groups < 1:
            raise ValueError(f"LRN size and groups must be >= 1, got {self.size}, {self.groups}")

    @classmethod
    def from_convention(
        cls,
        size: int,
        alpha: float,
        beta: float,
        k: float,
        groups: int = 1,
        convention: str = "paper",
    ) -> LRNParams:
        """convention "paper": alpha multiplies the sum; "per_size": alpha / size does (as
        `torch.nn.LocalResponseNorm`, Caffe and cuda-convnet)."""
        if convention not in ALPHA_CONVENTIONS:
            raise ValueError(
                f"lrn alpha convention {convention!r} is not one of {', '.join(ALPHA_CONVENTIONS)}"
            )
        scale = 1.0 / size if convention == "per_size" else 1.0
        return cls(int(size), float(alpha) * scale, float(beta), float(k), int(groups))
