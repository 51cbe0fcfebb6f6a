"""Old home of the weights writer; weights live in `alexnet.weights` now.

# lead: remove after merge (only train/loop.py still imports save_weights from here)
"""

from __future__ import annotations

from alexnet.weights import save as save_weights

__all__ = ["save_weights"]
