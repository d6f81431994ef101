"""Layers that point one way (docs/architecture.md, "Layers"): a module imports only its own package
and the packages below it, at module level or inside a function. mlcore, at the bottom, imports no
Django at all. Read from the source with `ast`, so it needs no database and imports nothing."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first.
LAYERS = ["mlcore", "dlsite", "accounts_app", "datasets_app", "pretrained_app", "training_app", "predict_app",
          "api_app", "housekeeping_app"]
# The web side's packages, none of which mlcore may import (it runs in the exported bundle and in
# plain scripts, without Django).
WEB = {"django", "rest_framework", "drf_spectacular", "drf_spectacular_sidecar", "axes", "csp", "celery", "kombu",
       "whitenoise", "dj_database_url"}
# Calls that reach a module or an app's model through a string: they count as imports too.
NAMING_CALLS = {"import_module", "__import__", "get_model", "ForeignKey", "OneToOneField", "ManyToManyField"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, module: str, is_package: bool):
    """(line, dotted name) of every import anywhere in `tree`, relative ones made absolute."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield node.lineno, ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if called in NAMING_CALLS:
                yield node.lineno, node.args[0].value


def offences(path: Path, source: str) -> list[str]:
    """What in this file points up or sideways out of its layer, each as "file:line: why"."""
    owner = path.relative_to(ROOT).parts[0]
    found = []
    for line, name in imported(ast.parse(source, str(path)), module_name(path), path.name == "__init__.py"):
        top = name.split(".")[0]
        where = f"{path.relative_to(ROOT)}:{line}"
        if top in LAYERS and LAYERS.index(top) > LAYERS.index(owner):
            found.append(f"{where}: imports {name}, but {top} is above {owner}")
        elif owner == "mlcore" and (top in WEB or top.startswith("django")):
            found.append(f"{where}: imports {name}, but mlcore uses no Django")
    return found


def project_files():
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.relative_to(ROOT).parts:
                yield path


def test_no_module_imports_a_layer_above_its_own():
    found = [offence for path in project_files() for offence in offences(path, path.read_text())]
    assert not found, "Imports that point up the layers (docs/architecture.md):\n" + "\n".join(found)


def test_every_app_has_its_place_in_the_layers():
    apps = {path.parent.name for path in ROOT.glob("*/apps.py")}
    assert apps, "no app found"
    assert apps <= set(LAYERS), f"place {sorted(apps - set(LAYERS))} in LAYERS and in docs/architecture.md"


def offences_in(relative: str, source: str) -> list[str]:
    return offences(ROOT / relative, source)


def test_the_check_names_the_file_and_line_of_each_import_that_points_up():
    inside_a_function = "import os\n\n\ndef limit(user):\n    from housekeeping_app import quotas\n"
    assert offences_in("datasets_app/example.py", inside_a_function) == [
        "datasets_app/example.py:5: imports housekeeping_app, but housekeeping_app is above datasets_app"]
    assert offences_in("dlsite/example.py", "from accounts_app.forms import InvitedUserCreationForm\n") == [
        "dlsite/example.py:1: imports accounts_app.forms, but accounts_app is above dlsite"]
    assert offences_in("mlcore/example.py", "def f():\n    from django.conf import settings\n") == [
        "mlcore/example.py:2: imports django.conf, but mlcore uses no Django"]
    by_name = 'import importlib\nimportlib.import_module("training_app.models")\n'
    assert offences_in("datasets_app/example.py", by_name) == [
        "datasets_app/example.py:2: imports training_app.models, but training_app is above datasets_app"]
    relation = 'run = models.ForeignKey("predict_app.Classification", on_delete=models.CASCADE)\n'
    assert len(offences_in("training_app/models.py", relation)) == 1


def test_the_check_lets_imports_of_the_same_layer_and_below_pass():
    source = ("from . import forms\nfrom .models import Run\nfrom dlsite import quotas\n"
              "from datasets_app.models import Dataset\nimport mlcore.words\n")
    assert offences_in("training_app/views.py", source) == []
    assert offences_in("mlcore/example.py", "import numpy\nfrom .words import count\n") == []
