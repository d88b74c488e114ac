"""The tree's layers, checked on the source: domain is pure, resources stand alone, nothing cycles."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("assetql_dagster", "resources", "gpu_executor")
HEAVY = ("dagster", "dagster_aws", "torch", "diffusers", "open_clip", "transformers", "boto3", "botocore")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file (lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


SOURCES = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def first_party(names: set[str]) -> set[str]:
    return {n for n in names if n in SOURCES}


def in_layer(module: str, layer: str) -> bool:
    return module == layer or module.startswith(f"{layer}.")


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if in_layer(m, "assetql_dagster.domain")))
def test_domain_imports_nothing_heavy_and_nothing_outside_the_domain(module):
    imported = imports(SOURCES[module])
    assert not {n for n in imported if n.split(".")[0] in HEAVY}
    assert all(in_layer(n, "assetql_dagster.domain") for n in first_party(imported))


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if in_layer(m, "assetql_dagster.pipeline")))
def test_stage_logic_is_plain_python_without_dagster_wiring(module):
    imported = imports(SOURCES[module])
    assert not {n for n in imported if n.split(".")[0] == "dagster"}
    assert not {n for n in first_party(imported) if in_layer(n, "assetql_dagster.defs")}


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if in_layer(m, "resources") or in_layer(m, "gpu_executor")))
def test_resources_and_the_executor_never_import_the_code_location(module):
    assert not [n for n in imports(SOURCES[module]) if in_layer(n, "assetql_dagster")]


def test_no_import_cycles():
    graph = {m: first_party(imports(p)) - {m} for m, p in SOURCES.items()}
    # A package's __init__ importing its own submodules is how packages export names, not a cycle.
    graph = {m: {n for n in deps if not in_layer(m, n)} for m, deps in graph.items()}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                pytest.fail(" -> ".join([*path[path.index(dep):], dep]) if dep in path else f"{module} -> {dep}")
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
