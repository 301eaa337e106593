"""The shape of the code: import contracts, no import cycles, light settings layers, lint clean.

These fail on a regression in CI, so the house stays as docs/ARCHITECTURE.md describes it.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "twinflow"
BIN = Path(sys.executable).parent
#: Imports the Snakefile must not pay for when it is parsed (each costs seconds).
HEAVY = ("torch", "sklearn", "zuko", "matplotlib", "bilby", "scipy.signal")
MAX_MODULE_LINES = 400


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        path = shutil.which(name)
        if path is None:
            pytest.skip(f"{name} is not installed (pip install -e .[test])")
    return str(path)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    result = run(tool("lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def _first_party_imports(path: Path, module: str) -> set[str]:
    """Modules of twinflow that ``path`` imports at any level (module-level and lazy)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("twinflow"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.startswith("twinflow"):
                out.add(base)
    return out


def test_no_import_cycles_between_modules():
    modules = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {
        m: {i for i in _first_party_imports(p, m) if i in modules} for m, p in modules.items()
    }
    # Depth-first search for a back edge; report the cycle it closes.
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                return stack[stack.index(n) :] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


@pytest.mark.parametrize(
    "branch, module", [("gw", "validation"), ("glitch", "settings"), ("anomaly", "settings")]
)
def test_settings_layer_imports_nothing_heavy(branch, module):
    """What the Snakefile imports to validate and slice a branch's config stays light."""
    code = (
        "import sys, yaml\n"
        f"from twinflow.{branch}.{module} import check_config\n"
        f"check_config(yaml.safe_load(open('config/config.yaml'))['{branch}'])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", f"the {branch} settings layer imports {result.stdout}"


def test_long_modules_say_why():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        n = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if n > MAX_MODULE_LINES and "longer than 400 lines" not in doc:
            offenders.append(f"{path.relative_to(REPO)} ({n} lines)")
    assert not offenders, (
        f"modules over {MAX_MODULE_LINES} lines without a reason in their docstring "
        f"('longer than 400 lines ...'): {offenders}"
    )


def test_ruff_lint_and_format_are_clean():
    ruff = tool("ruff")
    lint = run(ruff, "check", ".")
    assert lint.returncode == 0, lint.stdout[-4000:]
    fmt = run(ruff, "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout[-4000:]


def test_snakefmt_is_clean():
    result = run(tool("snakefmt"), "--check", "Snakefile", "workflow/")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
