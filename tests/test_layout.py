"""The walls of the package: no import cycle, every imported distribution declared, the torch-free rooms."""

import ast
import sys
from importlib import metadata
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "skcgcnn"
PYPROJECT = PACKAGE.parent / "pyproject.toml"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """Modules of the package and top-level third-party modules that ``path`` imports, deferred imports too."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            inside |= {target} | {f"{target}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            outside.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            outside |= {alias.name.split(".")[0] for alias in node.names}
    return inside, outside


def test_no_module_of_the_package_imports_itself_through_others():
    modules = _modules()
    graph = {m: {t for t in _imports(m, p)[0] if t in modules and t != m} for m, p in modules.items()}

    def reaches(start, goal, seen):
        for nxt in graph[start] - seen:
            if nxt == goal or reaches(nxt, goal, seen | {nxt}):
                return True
        return False

    # A package's __init__ importing its own modules is not a cycle; any other loop is.
    cycles = [m for m in graph if any(reaches(t, m, {t}) for t in graph[m] if not t.startswith(m + "."))]
    assert not cycles


def test_every_distribution_the_package_imports_is_declared():
    declared = set()
    text = PYPROJECT.read_text()
    for line in text[text.index("dependencies = ["):text.index("[project.scripts]")].splitlines():
        for quoted in line.split('"')[1::2]:
            declared.add(quoted.split(">")[0].split("=")[0].split("[")[0].strip().lower())
    providers = metadata.packages_distributions()
    imported = set().union(*(_imports(m, p)[1] for m, p in _modules().items()))
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m not in {"skcgcnn", "__future__"}}
    missing = {m for m in third_party if not {d.lower() for d in providers.get(m, [m])} & declared}
    assert not missing


@pytest.mark.parametrize("module, allowed", [("skcgcnn.nn", {"torch"}),
                                             ("skcgcnn.graphs", {"numpy", "joblib", "pymatgen", "sklearn", "tqdm"})])
def test_the_model_knows_only_torch_and_the_graphs_never_torch(module, allowed):
    inside, outside = _imports(module, _modules()[module])
    assert outside - set(sys.stdlib_module_names) - {"__future__"} <= allowed
