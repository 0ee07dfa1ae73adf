# Copyright 2026 The fsgan_jax Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""The package's structure: imports flow one way (no cycles), no hidden function-level imports of the package, no
private name used across modules, no module over ``MAX_LINES`` lines, every module under the license header.

Read from the source with ``ast`` (nothing is imported), so a violation fails here with the modules named.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'fsgan_jax'
MAX_LINES = 500


def _modules() -> dict[str, pathlib.Path]:
  mods = {}
  for path in sorted(PACKAGE.rglob('*.py')):
    rel = path.relative_to(ROOT).with_suffix('')
    parts = rel.parts[:-1] if rel.name == '__init__' else rel.parts
    mods['.'.join(parts)] = path
  return mods


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _targets(node: ast.Import | ast.ImportFrom) -> list[tuple[str, str | None]]:
  """(package module imported, name taken from it or None) for one import statement."""
  if isinstance(node, ast.Import):
    return [(a.name, None) for a in node.names if a.name.startswith('fsgan_jax')]
  if node.level or not (node.module or '').startswith('fsgan_jax'):
    return []
  out = []
  for a in node.names:
    sub = f'{node.module}.{a.name}'
    out.append((sub, None) if sub in MODULES else (node.module, a.name))
  return out


def _module_imports(tree: ast.Module) -> set[str]:
  return {mod for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
          for mod, _ in _targets(node) if mod in MODULES}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(m: str) -> list[str] | None:
    state[m] = 1
    stack.append(m)
    for n in sorted(graph.get(m, ())):
      if state.get(n) == 1:
        return stack[stack.index(n):] + [n]
      if n not in state:
        found = visit(n)
        if found:
          return found
    stack.pop()
    state[m] = 2
    return None

  for m in sorted(graph):
    if m not in state:
      found = visit(m)
      if found:
        return found
  return None


def test_no_import_cycles():
  graph = {name: _module_imports(tree) - {name} for name, tree in TREES.items()}
  # A package's __init__ importing its own submodules is not a cycle of the code's layers.
  graph = {m: {n for n in deps if not (m == n.rsplit('.', 1)[0] and MODULES[m].name == '__init__.py')}
           for m, deps in graph.items()}
  assert _find_cycle(graph) is None, ' -> '.join(_find_cycle(graph))


def test_no_function_level_imports_of_the_package():
  found = []
  for name, tree in TREES.items():
    for fn in ast.walk(tree):
      if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for node in ast.walk(fn):
          if isinstance(node, (ast.Import, ast.ImportFrom)) and _targets(node):
            found.append(f'{name}.{fn.name}:{node.lineno}')
  assert not found, found


def test_no_private_names_used_across_modules():
  found = []
  for name, tree in TREES.items():
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
      if isinstance(node, (ast.Import, ast.ImportFrom)):
        for mod, taken in _targets(node):
          if taken is not None and taken.startswith('_') and mod != name:
            found.append(f'{name} imports {mod}.{taken}')
        if isinstance(node, ast.ImportFrom):
          for a in node.names:
            sub = f'{node.module}.{a.name}'
            if sub in MODULES:
              aliases[a.asname or a.name] = sub
        else:
          for a in node.names:
            if a.name in MODULES:
              aliases[a.asname or a.name] = a.name
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
          and node.attr.startswith('_') and not node.attr.startswith('__') and aliases[node.value.id] != name):
        found.append(f'{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}')
  assert not found, found


@pytest.mark.parametrize('name', sorted(MODULES))
def test_module_size_and_license(name):
  text = MODULES[name].read_text()
  assert text.count('\n') <= MAX_LINES, f'{MODULES[name]} has {text.count(chr(10))} lines (> {MAX_LINES}): split it'
  if text.strip():
    assert 'Licensed under the Apache License, Version 2.0' in text[:1000], f'{MODULES[name]}: no license header'


def _top_level_names(tree: ast.Module) -> set[str]:
  names: set[str] = set()
  for node in tree.body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      names.add(node.name)
    elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
      targets = node.targets if isinstance(node, ast.Assign) else [node.target]
      for t in targets:
        names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      names.update((a.asname or a.name).split('.')[0] for a in node.names)
    elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For)):
      names.update(_top_level_names(ast.Module(body=list(ast.iter_child_nodes(node)), type_ignores=[])))
  return names


def test_attributes_of_package_modules_exist():
  """``module.name`` for an imported package module names something that module defines (a renamed or moved
  function is found here, not by the one code path that calls it)."""
  defined = {name: _top_level_names(tree) | {m.rsplit('.', 1)[1] for m in MODULES if '.' in m and
                                              m.rsplit('.', 1)[0] == name}
             for name, tree in TREES.items()}
  files = {**{n: t for n, t in TREES.items()},
           **{str(p): ast.parse(p.read_text()) for folder in ('tests', 'benchmarks', 'tools')
              for p in sorted((ROOT / folder).glob('*.py'))}}
  missing = []
  for where, tree in files.items():
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('fsgan_jax'):
        for a in node.names:
          if f'{node.module}.{a.name}' in MODULES:
            aliases[a.asname or a.name] = f'{node.module}.{a.name}'
      elif isinstance(node, ast.Import):
        for a in node.names:
          if a.name in MODULES and a.asname:
            aliases[a.asname] = a.name
    shadowed = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
          and node.value.id not in shadowed and node.attr not in defined[aliases[node.value.id]]):
        missing.append(f'{where}:{node.lineno} {aliases[node.value.id]}.{node.attr}')
  assert not missing, missing
