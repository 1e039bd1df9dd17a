"""The shape of the package: imports point one way (no cycle, not even through imports inside
functions), the core never reaches up to the CLI, plotting or optional faces, and `import
fastnn` pulls in no optional dependency."""
import ast
import os
import subprocess
import sys

import fastnn

PACKAGE = os.path.dirname(fastnn.__file__)
CORE = ("fastnn.ops", "fastnn.layers", "fastnn.losses", "fastnn.optim", "fastnn.network",
        "fastnn.config", "fastnn.errors", "fastnn.serialize", "fastnn.train", "fastnn.data")
NOT_FROM_CORE = ("fastnn.cli", "fastnn.commands", "fastnn.plot", "fastnn.model", "fastnn.zoo",
                 "fastnn.sklearn", "fastnn.onnx", "fastnn.distributed")
OPTIONAL = ("matplotlib", "sklearn", "onnx", "onnxruntime", "mpi4py", "torch", "jax", "hypothesis")


def module_names():
    names = {}
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), os.path.dirname(PACKAGE))[:-3]
                name = rel.replace(os.sep, ".")
                names[name[:-len(".__init__")] if name.endswith(".__init__") else name] = os.path.join(folder, f)
    return names


def imports_of(name, path, known):
    """fastnn modules that `name` imports anywhere in its body (deferred imports included)."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[:len(parent) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            # `from X import name`: the submodule X.name when there is one, else X itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and t != "fastnn":
                found.add(t)
    return found


def graph():
    known = module_names()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_the_import_graph_has_no_cycle():
    g = graph()
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(g):
        if node not in state:
            visit(node)


def test_the_core_does_not_import_the_layers_above_it():
    for name, targets in graph().items():
        if name.startswith(CORE):
            bad = sorted(t for t in targets if t.startswith(NOT_FROM_CORE))
            assert not bad, f"{name} imports {bad}"


def test_data_knows_nothing_about_models():
    for name, targets in graph().items():
        if name.startswith("fastnn.data"):
            assert all(t.startswith(("fastnn.data", "fastnn.atomic", "fastnn.errors")) for t in targets), \
                (name, targets)


def test_import_fastnn_pulls_in_no_optional_dependency():
    code = ("import sys, fastnn; print(' '.join(m for m in %r if m in sys.modules))" % (OPTIONAL,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
