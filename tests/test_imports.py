"""The shape of the package, read from its source with `ast`: who imports whom.

- no import circles among module-level imports (a package's `__init__` counts: importing
  `a.b.c` runs `a.b` first);
- `alexnet.train` is imported only by `alexnet.train.*`, the `train` command and experiments;
- no module imports the package face `alexnet` (only `cli.py` / `__main__.py`, for
  `__version__`): library code imports from the defining module;
- imports sit at the top of modules, except optional heavy dependencies and the deliberate
  late imports of the command line (`cli`, `commands/*`) and of the light modules it reads to
  build its parsers (`LIGHT`): those import no torch at their top, and a subprocess test
  checks that building every parser imports no torch (tests/test_cli_startup.py).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "alexnet"
FACE_ALLOWED = {"alexnet.cli", "alexnet.__main__"}
TRAIN_ALLOWED_PREFIXES = ("alexnet.train", "alexnet.commands.train", "alexnet.experiments")
# optional dependencies (extras, or Pillow's colour management, built only with littlecms)
OPTIONAL = (
    "PIL.ImageCms",
    "tqdm",  # a dependency, but a bare GPU machine may lack it (alexnet.progress)
    "matplotlib",
    "onnx",
    "onnxruntime",
    "scipy",
    "torch.utils.tensorboard",
    # `alexnet serve` needs the serve extra: its command imports the server when it runs
    "uvicorn",
    "fastapi",
    "alexnet.serve",  # optional: the training run works without it
    "tensorboard",
    "torch.utils.tensorboard",
    # `alexnet serve` needs the serve extra: its command imports the server when it runs
    "uvicorn",
    "fastapi",
    "alexnet.serve",
)
# modules the command line imports to build its parsers: torch, numpy and the like only inside
# their functions (a package face `__init__` that imports its names when first used is here too)
LIGHT = {
    "alexnet.lazy",
    "alexnet.__main__",
    "alexnet.cli",
    "alexnet.fileio",
    "alexnet.train",
    "alexnet.train.config",
    "alexnet.weights",
    "alexnet.weights.hub",
}
LIGHT_PREFIXES = ("alexnet.commands.",)
# (importer, imported) imported inside a function, each for a reason
LATE = {
    # every weights format (Hugging Face, the Hub, torchvision): read only for --init-from
    ("alexnet.train.finetune", "alexnet.weights.files"),
    # the two-device split (paper §3.2): built only for --model-parallel
    ("alexnet.train.loop", "alexnet.models.parallel"),
    # the layer table (`alexnet summary`'s names) that --freeze reads: only a run that freezes
    ("alexnet.train.finetune", "alexnet.models.summary"),
}
# the package face imports lazily on purpose (`import alexnet.errors` stays free of torch);
# models/ is changed separately and checked by its own tests
TOP_IMPORT_EXEMPT = ROOT
TOP_IMPORT_EXEMPT_PREFIX = "alexnet.models"
# (importer, imported or "inside a function") still pending in the training engine's files,
# which change in a parallel step; that step empties this set.


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom, importer: str) -> list[str]:
    """Internal modules an import statement loads (a `from X import y` may name module X.y)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        package = (
            importer if MODULES[importer].name == "__init__.py" else importer.rsplit(".", 1)[0]
        )
        for _ in range(node.level - 1):
            package = package.rsplit(".", 1)[0]
        base = f"{package}.{base}" if base else package
    if internal(base) is None:  # another package: the full names (`PIL.ImageCms`)
        return [f"{base}.{a.name}" for a in node.names]
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    # names that are not submodules come from `base` itself
    return subs + ([base] if len(subs) < len(node.names) else [])


def imports(module: str, *, top_only: bool) -> list[tuple[str, bool]]:
    """(imported name, inside a function?) for every import statement of `module`."""
    tree = ast.parse(MODULES[module].read_text())
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if not (top_only and in_function):
                    found.extend((t, in_function) for t in _targets(child, module))
            visit(child, nested)

    visit(tree, False)
    return found


def _is_type_checking_only(module: str, target: str) -> bool:
    tree = ast.parse(MODULES[module].read_text())
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)) and target in _targets(
                    sub, module
                ):
                    return True
    return False


def internal(name: str) -> str | None:
    """The internal module a dotted name refers to (a module or its package), else None."""
    while name:
        if name in MODULES:
            return name
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return None


def graph() -> dict[str, set[str]]:
    """Module-level import edges between internal modules, with the packages that importing a
    module runs first (not the importer's own ancestors, nor the root face)."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for name, _ in imports(module, top_only=True):
            target = internal(name)
            if target is None or target == module or _is_type_checking_only(module, name):
                continue
            edges[module].add(target)
            parts = target.split(".")
            for i in range(2, len(parts)):
                package = ".".join(parts[:i])
                if package in MODULES and not (module + ".").startswith(package + "."):
                    edges[module].add(package)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_the_graph_is_read_correctly():
    """The reader itself: known edges are found, a made-up circle is detected."""
    edges = graph()
    assert "alexnet.weights.safetensors_io" in edges["alexnet.weights.files"]
    assert "alexnet.errors" in edges["alexnet.runtime"]
    assert "alexnet.weights" in edges["alexnet.inference"]  # parent package of .meta too
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circles():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_train_is_imported_only_by_training_code():
    bad = [
        (module, name)
        for module in MODULES
        if not module.startswith(TRAIN_ALLOWED_PREFIXES)
        for name, _ in imports(module, top_only=False)
        if name == "alexnet.train" or name.startswith("alexnet.train.")
    ]
    assert bad == []


def test_library_code_never_imports_the_package_face():
    bad = {
        (module, ROOT)
        for module in MODULES
        if module not in FACE_ALLOWED and module != ROOT
        for name, _ in imports(module, top_only=False)
        if name == ROOT
    }
    assert bad == set()


def test_imports_at_the_top_of_modules():
    bad = {
        (module, "inside a function")
        for module in MODULES
        if module != TOP_IMPORT_EXEMPT and not module.startswith(TOP_IMPORT_EXEMPT_PREFIX)
        if module not in LIGHT and not module.startswith(LIGHT_PREFIXES)
        for name, nested in imports(module, top_only=False)
        if nested and not name.startswith(OPTIONAL) and (module, name) not in LATE
    }
    assert bad == set()


def test_a_machine_without_tqdm_still_trains_packs_and_downloads():
    # a lent GPU machine runs this tree with its own python3, which may lack tqdm: the modules
    # that show progress must import, and their bars must work as silent stand-ins
    code = (
        "import sys; sys.modules['tqdm'] = None\n"
        "import alexnet.cli, alexnet.train.loop, alexnet.data.pack, alexnet.weights.hub\n"
        "from alexnet.progress import progress_bar, SilentBar\n"
        "from alexnet.train.loop import Progress\n"
        "with progress_bar(total=10, unit='B') as bar:\n"
        "    bar.update(4); bar.set_postfix(loss='1.0')\n"
        "assert isinstance(bar, SilentBar) and bar.n == 4\n"
        "p = Progress(True, 5, 0, 'epoch 1', every=0.0); p.update(1, 0.5, 10.0, 1.0); p.close()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "epoch 1 step 1/5 loss 0.5000" in done.stderr
