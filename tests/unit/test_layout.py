"""The layout of streams/: the README's Layout section names every module, none is too long,
and the worker does not import the offline tools."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STREAMS = REPO / "streams"
MAX_LINES = 400


def layout_section() -> dict[str, str]:
    """The README's layout block: the text of each ``streams/`` entry, by its name."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        entry = re.match(r"^  (\S+)\s", line)
        if entry:
            current = entry.group(1)
            entries[current] = line
        elif current and line.startswith("    "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def test_the_readme_layout_names_every_package_and_module_of_streams() -> None:
    entries = layout_section()
    missing = []
    for path in sorted(STREAMS.iterdir()):
        if path.suffix == ".py" and path.stem != "__init__":
            if path.name not in entries:
                missing.append(path.name)
        elif path.is_dir() and (path / "__init__.py").exists():
            text = entries.get(f"{path.name}/")
            if text is None:
                missing.append(f"{path.name}/")
                continue
            for child in sorted(path.iterdir()):
                if child.suffix == ".py" and child.stem not in ("__init__", "__main__"):
                    name = child.stem
                elif child.is_dir() and not child.name.startswith("__"):
                    name = f"{child.name}/"
                else:
                    continue
                if not re.search(rf"(?<![\w/]){re.escape(name)}(?![\w])", text):
                    missing.append(f"{path.name}/{name}")
    assert not missing, f"not in the README's Layout section: {missing}"


def test_no_module_of_streams_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for path in STREAMS.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def imports_of(module: str) -> set[str]:
    path = REPO / Path(*module.split("."))
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    found = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {
        name
        for name in found
        if name.startswith("streams")
        and (
            (REPO / Path(*name.split("."))).with_suffix(".py").exists()
            or (REPO / Path(*name.split(".")) / "__init__.py").exists()
        )
    }


def test_the_worker_imports_no_offline_tool() -> None:
    seen: set[str] = set()
    pending = ["streams.process.worker"]
    while pending:
        module = pending.pop()
        if module not in seen:
            seen.add(module)
            pending.extend(imports_of(module))
    assert not {m for m in seen if m.startswith("streams.tools")}, sorted(seen)
